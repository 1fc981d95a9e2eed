// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title Minimal Uniswap V3 interfaces
/// @notice The parts of Uniswap V3's factory, pool and callbacks that Ballast's periphery and tests call, written for
///         0.8 from the published ABI (the v3-core sources are 0.7.6 and are not compiled here). Signatures, and
///         TickMath's sqrt-price bounds.

/// @dev TickMath's bounds of the sqrt price (Q64.96): a swap's `sqrtPriceLimitX96` must lie strictly inside them, so
///      "no price limit" is one step inside the bound in the swap's direction (MIN + 1 selling token0, MAX − 1 buying).
uint160 constant MIN_SQRT_RATIO = 4_295_128_739;
uint160 constant MAX_SQRT_RATIO = 1_461_446_703_485_210_103_287_273_052_203_988_822_378_723_970_342;

/// @notice UniswapV3Factory: the registry of the pools it deployed.
interface IUniswapV3FactoryMinimal {
    /// @notice The pool the factory deployed for the pair (either order) and fee tier; address(0) if none.
    function getPool(address tokenA, address tokenB, uint24 fee) external view returns (address pool);
    function createPool(address tokenA, address tokenB, uint24 fee) external returns (address pool);
}

/// @notice UniswapV3Pool: the functions used here (immutables, state, initialize, mint, swap).
interface IUniswapV3PoolMinimal {
    function factory() external view returns (address);
    function token0() external view returns (address);
    function token1() external view returns (address);
    function fee() external view returns (uint24);
    function tickSpacing() external view returns (int24);
    function liquidity() external view returns (uint128);
    function slot0()
        external
        view
        returns (
            uint160 sqrtPriceX96,
            int24 tick,
            uint16 observationIndex,
            uint16 observationCardinality,
            uint16 observationCardinalityNext,
            uint8 feeProtocol,
            bool unlocked
        );
    function initialize(uint160 sqrtPriceX96) external;
    /// @notice Adds `amount` liquidity in [tickLower, tickUpper); the caller pays in `uniswapV3MintCallback`.
    function mint(address recipient, int24 tickLower, int24 tickUpper, uint128 amount, bytes calldata data)
        external
        returns (uint256 amount0, uint256 amount1);
    /// @notice Swaps token0 for token1 (`zeroForOne`) or back; `amountSpecified` > 0 is an exact input, < 0 an exact
    ///         output. The output is sent to `recipient` first, then the caller's `uniswapV3SwapCallback` must pay
    ///         what it owes. Returns the pool's balance deltas (positive: received by the pool).
    function swap(address recipient, bool zeroForOne, int256 amountSpecified, uint160 sqrtPriceLimitX96, bytes calldata data)
        external
        returns (int256 amount0, int256 amount1);
}

/// @notice Called on `msg.sender` by `IUniswapV3PoolMinimal.swap`: pay the positive delta to the pool.
interface IUniswapV3SwapCallbackMinimal {
    function uniswapV3SwapCallback(int256 amount0Delta, int256 amount1Delta, bytes calldata data) external;
}

/// @notice Called on `msg.sender` by `IUniswapV3PoolMinimal.mint`: pay both amounts to the pool.
interface IUniswapV3MintCallbackMinimal {
    function uniswapV3MintCallback(uint256 amount0Owed, uint256 amount1Owed, bytes calldata data) external;
}
