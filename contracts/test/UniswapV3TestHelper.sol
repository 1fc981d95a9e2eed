// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

import {
    IUniswapV3PoolMinimal,
    IUniswapV3MintCallbackMinimal,
    IUniswapV3SwapCallbackMinimal,
    MAX_SQRT_RATIO,
    MIN_SQRT_RATIO
} from "../periphery/interfaces/IUniswapV3Minimal.sol";

/// @notice Test double around a real Uniswap V3 pool (lib/uniswapV3.ts): adds liquidity paid by the caller, and
///         quotes a swap by running it and reverting in the callback with the pool's deltas (`quoteSwap`, for a
///         staticcall): the quote is the pool's own arithmetic, independent of the contract under test.
contract UniswapV3TestHelper is IUniswapV3MintCallbackMinimal, IUniswapV3SwapCallbackMinimal {
    using SafeERC20 for IERC20;

    /// @dev The pool of the mint in progress and who pays for it.
    address private transient _pool;
    address private transient _payer;

    /// @notice The swap's deltas, raised from the callback so that nothing is paid.
    error SwapQuote(int256 amount0Delta, int256 amount1Delta);
    error UnexpectedCallback(address caller);

    /// @notice Adds `liquidity` to `pool` in [tickLower, tickUpper) for `recipient`; the caller pays (approve this
    ///         contract first).
    function mint(address pool, address recipient, int24 tickLower, int24 tickUpper, uint128 liquidity)
        external
        returns (uint256 amount0, uint256 amount1)
    {
        _pool = pool;
        _payer = msg.sender;
        (amount0, amount1) = IUniswapV3PoolMinimal(pool).mint(recipient, tickLower, tickUpper, liquidity, "");
        _pool = address(0);
        _payer = address(0);
    }

    function uniswapV3MintCallback(uint256 amount0Owed, uint256 amount1Owed, bytes calldata) external {
        if (msg.sender != _pool || _pool == address(0)) revert UnexpectedCallback(msg.sender);
        IUniswapV3PoolMinimal pool = IUniswapV3PoolMinimal(msg.sender);
        if (amount0Owed != 0) IERC20(pool.token0()).safeTransferFrom(_payer, msg.sender, amount0Owed);
        if (amount1Owed != 0) IERC20(pool.token1()).safeTransferFrom(_payer, msg.sender, amount1Owed);
    }

    /// @notice The pool's deltas for a swap with no price limit (`amountSpecified` < 0: exact output), measured by
    ///         running it and reverting in the callback. Not a view only because the pool's swap is not.
    function quoteSwap(address pool, bool zeroForOne, int256 amountSpecified)
        external
        returns (int256 amount0, int256 amount1)
    {
        try IUniswapV3PoolMinimal(pool).swap(
            address(this), zeroForOne, amountSpecified, zeroForOne ? MIN_SQRT_RATIO + 1 : MAX_SQRT_RATIO - 1, ""
        ) {
            revert UnexpectedCallback(pool); // the callback always reverts
        } catch (bytes memory reason) {
            if (reason.length != 68 || bytes4(reason) != SwapQuote.selector) {
                assembly ("memory-safe") {
                    revert(add(reason, 32), mload(reason))
                }
            }
            assembly ("memory-safe") {
                amount0 := mload(add(reason, 36))
                amount1 := mload(add(reason, 68))
            }
        }
    }

    function uniswapV3SwapCallback(int256 amount0Delta, int256 amount1Delta, bytes calldata) external pure {
        revert SwapQuote(amount0Delta, amount1Delta);
    }
}
