// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {IMarginEngine} from "../interfaces/IMarginEngine.sol";
import {IOracleRouter} from "../interfaces/IOracleRouter.sol";
import {IVault} from "../interfaces/IVault.sol";
import {
    IUniswapV3FactoryMinimal,
    IUniswapV3PoolMinimal,
    IUniswapV3SwapCallbackMinimal,
    MAX_SQRT_RATIO,
    MIN_SQRT_RATIO
} from "./interfaces/IUniswapV3Minimal.sol";

/// @title FlashLiquidator
/// @notice Capital-free liquidation for keepers (README "Liquidation by flash swap"): in one transaction it optionally
///         liquidates an account, then buys the account's collateral from the engine with the settlement asset (USDC)
///         flash-swapped out of the Uniswap V3 pool of (collateral, USDC), pays the pool in the collateral it bought,
///         and sends the rest of the collateral (the profit: the engine's `collateralDiscount` less the pool's fee and
///         price impact) to the recipient. The caller needs no USDC and no collateral.
/// @dev Holds nothing between transactions: the USDC the pool sends is exactly what the engine pulls (checked), the
///      collateral bought is exactly the pool's due plus the profit sent out, and the one approval it gives (USDC to
///      the engine) is of the exact repay and is used up by `buyCollateral`. Permissionless: anyone may call it, the
///      profit goes where the caller says. The swap callback is accepted only from the pool this contract is swapping
///      with, while it swaps (a transient slot set around `pool.swap`), and that pool was checked to be the factory's
///      pool of (collateral, USDC) at its own fee tier: the factory records only pools it deployed.
contract FlashLiquidator is IUniswapV3SwapCallbackMinimal, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    uint256 private constant WAD = 1e18;

    /// @notice The engine (IMarginEngine and IVault at one address).
    IMarginEngine public immutable engine;
    /// @notice The engine's oracle: the price `buyCollateral` sells at.
    IOracleRouter public immutable oracle;
    /// @notice The Uniswap V3 factory whose pools are accepted.
    IUniswapV3FactoryMinimal public immutable factory;
    /// @notice The engine's settlement asset (USDC): what the pool lends and the engine is repaid in.
    address public immutable settlementAsset;
    /// @dev 10^(18 − settlement decimals): WAD USD per settlement-token unit (the engine's `settlementScale`).
    uint256 private immutable _settlementScale;

    /// @dev The pool this contract is swapping with, set only for the duration of `pool.swap`: the one caller the
    ///      swap callback accepts.
    address private transient _expectedPool;
    /// @dev Collateral bought in the callback, read back after the swap (for the profit and the event).
    uint256 private transient _bought;

    /// @notice What one flash liquidation does. @param accountId The account. @param collateral The margin token
    ///         bought (e.g. WETH). @param pool The Uniswap V3 pool of (collateral, settlement asset) to flash-swap
    ///         from. @param maxRepay Most USDC to repay (settlement-token units; 0 = as much as can be bought: the
    ///         debt, or all the collateral if it is worth less at the discounted price). @param minProfit Least
    ///         collateral the recipient must receive. @param recipient Receives the profit (and the liquidation
    ///         reward). @param liquidateFirst Call `liquidate(accountId)` first.
    struct Params {
        uint256 accountId;
        address collateral;
        address pool;
        uint256 maxRepay;
        uint256 minProfit;
        address recipient;
        bool liquidateFirst;
    }

    /// @notice `pool` is not the factory's pool of (`collateral`, settlement asset) at its fee tier (or not a pool).
    error UnknownPool(address pool, address collateral);
    /// @notice `uniswapV3SwapCallback` called by `caller` while this contract expected `expectedPool`
    ///         (address(0): no swap of this contract is in progress).
    error UnexpectedCallback(address caller, address expectedPool);
    /// @notice The account owes nothing (settlement balance >= 0) after the optional liquidation.
    error NothingToRepay(uint256 accountId);
    /// @notice The account holds no margin in `collateral`.
    error NoCollateral(uint256 accountId, address collateral);
    /// @notice The pool sent `received` USDC instead of the `requested` exact output (it ran out of liquidity).
    error PartialFill(uint256 received, uint256 requested);
    /// @notice The collateral bought less the collateral owed to the pool (negative: a loss) is below `minProfit`.
    error InsufficientProfit(int256 profit, uint256 minProfit);
    /// @notice The engine took `pulled` USDC instead of the `repay` this contract computed (defence in depth: the
    ///         computation mirrors `buyCollateral`'s, so this should never happen).
    error RepayMismatch(uint256 repay, uint256 pulled);
    error ZeroAddress();

    /// @notice One flash liquidation: `repaid` USDC (flash-swapped) bought `bought` collateral from the engine,
    ///         `paidToPool` of it paid the swap, `profit` went to `recipient`, with `reward` USDC of liquidation reward
    ///         (0 unless `liquidateFirst`).
    event FlashLiquidation(
        uint256 indexed accountId,
        address indexed caller,
        address indexed recipient,
        address pool,
        address collateral,
        uint256 repaid,
        uint256 bought,
        uint256 paidToPool,
        uint256 profit,
        uint256 reward
    );

    constructor(IMarginEngine engine_, IUniswapV3FactoryMinimal factory_) {
        if (address(engine_) == address(0) || address(factory_) == address(0)) revert ZeroAddress();
        engine = engine_;
        factory = factory_;
        oracle = engine_.oracle();
        address usdc = engine_.settlementAsset();
        settlementAsset = usdc;
        _settlementScale = 10 ** (18 - IERC20Metadata(usdc).decimals());
    }

    /// @notice Liquidates (if `p.liquidateFirst`) and buys `p.collateral` from the account with USDC flash-swapped out
    ///         of `p.pool`, repaying the pool in collateral; sends the profit to `p.recipient`.
    /// @dev Reward: `liquidate` credits the caller, which is this contract, so with `liquidateFirst` the reward is
    ///      claimed (`claimKeeperRewards`) to `p.recipient` in the same transaction, after the repay has returned USDC
    ///      to the pool; if the pool cannot pay it yet (`InsufficientCapital`) the whole call reverts and the keeper
    ///      can liquidate directly (the reward then stays its own claimable balance) and flash-buy afterwards.
    ///      Reverts `UnknownPool`, `NothingToRepay`, `NoCollateral`, `PartialFill`, `InsufficientProfit`, and the
    ///      engine's errors (`NotLiquidatable`, `RescueAvailable`, `OracleUnhealthy`, ...).
    /// @return profit Collateral sent to the recipient.
    function flashLiquidate(Params calldata p) external nonReentrant returns (uint256 profit) {
        if (p.recipient == address(0)) revert ZeroAddress();
        _checkPool(p.pool, p.collateral);
        if (p.liquidateFirst) engine.liquidate(p.accountId);

        uint256 repay = _repayFor(p.accountId, p.collateral, p.maxRepay);
        bool zeroForOne = p.collateral < settlementAsset; // the collateral is token0: paid in, token1 (USDC) out
        _expectedPool = p.pool;
        (int256 amount0, int256 amount1) = IUniswapV3PoolMinimal(p.pool).swap(
            address(this),
            zeroForOne,
            -int256(repay), // exact output: the repay, no more
            // no price limit (one step inside TickMath's bound): a limit could only make the exact output fill
            // partially, which reverts `PartialFill`; `minProfit` is the price bound
            zeroForOne ? MIN_SQRT_RATIO + 1 : MAX_SQRT_RATIO - 1,
            abi.encode(p.accountId, p.collateral, repay, p.minProfit)
        );
        _expectedPool = address(0);

        uint256 paidToPool = uint256(zeroForOne ? amount0 : amount1); // > 0: checked in the callback
        uint256 bought = _bought;
        _bought = 0;
        profit = bought - paidToPool; // >= minProfit: checked in the callback
        if (profit != 0) IERC20(p.collateral).safeTransfer(p.recipient, profit);

        _finish(p, repay, bought, paidToPool, profit);
    }

    /// @dev The liquidation reward (when this call liquidated) to the recipient, and the event. Its own frame: the
    ///      legacy pipeline of `npm run coverage` has no stack for the event's ten values in `flashLiquidate`.
    function _finish(Params calldata p, uint256 repay, uint256 bought, uint256 paidToPool, uint256 profit) private {
        uint256 reward;
        if (p.liquidateFirst) {
            reward = engine.keeperRewardsOf(address(this));
            if (reward != 0) engine.claimKeeperRewards(p.recipient);
        }
        emit FlashLiquidation(
            p.accountId, msg.sender, p.recipient, p.pool, p.collateral, repay, bought, paidToPool, profit, reward
        );
    }

    /// @notice Uniswap V3 swap callback: receives the flash-swapped USDC, buys the collateral from the engine with it,
    ///         and pays the pool its due in collateral. Only the pool of the swap in progress may call it.
    function uniswapV3SwapCallback(int256 amount0Delta, int256 amount1Delta, bytes calldata data) external {
        address expected = _expectedPool;
        if (expected == address(0) || msg.sender != expected) revert UnexpectedCallback(msg.sender, expected);
        (uint256 accountId, address collateral, uint256 repay, uint256 minProfit) =
            abi.decode(data, (uint256, address, uint256, uint256));
        (int256 collateralDelta, int256 usdcDelta) =
            collateral < settlementAsset ? (amount0Delta, amount1Delta) : (amount1Delta, amount0Delta);
        uint256 received = usdcDelta < 0 ? uint256(-usdcDelta) : 0;
        if (received != repay) revert PartialFill(received, repay);
        // A genuine pool charges a positive input for a non-zero exact output; a negative one would revert here.
        uint256 owed = SafeCast.toUint256(collateralDelta);

        IERC20 usdc = IERC20(settlementAsset);
        usdc.forceApprove(address(engine), repay);
        uint256 bought = engine.buyCollateral(accountId, collateral, repay, 0);
        uint256 unused = usdc.allowance(address(this), address(engine));
        if (unused != 0) revert RepayMismatch(repay, repay - unused);

        // Compared unsigned, so a minProfit of any size is a floor (a signed cast of one >= 2^255 would wrap negative:
        // review finding F1); the error reports the signed profit.
        if (bought < owed || bought - owed < minProfit) {
            revert InsufficientProfit(SafeCast.toInt256(bought) - SafeCast.toInt256(owed), minProfit);
        }
        _bought = bought;
        IERC20(collateral).safeTransfer(msg.sender, owed);
    }

    /// @notice USDC (settlement-token units) a flash liquidation of `accountId` would repay now, without liquidating:
    ///         min(`maxRepay` (0 = no cap), the debt rounded up, the price of all its `collateral` margin at the
    ///         discounted oracle price rounded up). Reverts `NothingToRepay`, `NoCollateral`.
    function repayFor(uint256 accountId, address collateral, uint256 maxRepay) external view returns (uint256) {
        return _repayFor(accountId, collateral, maxRepay);
    }

    /// @dev Mirrors `LiquidationLogic._quote` so that the flash-swapped amount is exactly what `buyCollateral` takes:
    ///      the debt in token units rounded up (the engine lets the buyer repay all of it), and, when the margin is
    ///      worth less than that at the discounted price (rounded down, for the protocol), the price of all of it
    ///      rounded up (for the account), as the engine charges it.
    function _repayFor(uint256 accountId, address collateral, uint256 maxRepay) private view returns (uint256 repay) {
        int256 settlement = engine.accountState(accountId).settlement;
        if (settlement >= 0) revert NothingToRepay(accountId);
        uint256 available = IVault(address(engine)).marginOf(accountId, collateral);
        if (available == 0) revert NoCollateral(accountId, collateral);
        uint256 scale = _settlementScale;
        repay = Math.ceilDiv(uint256(-settlement), scale);
        uint256 discounted = Math.mulDiv(oracle.price(collateral), WAD - engine.riskParams().collateralDiscount, WAD);
        uint8 decimals = IVault(address(engine)).assetConfig(collateral).decimals;
        uint256 allOfIt = Math.mulDiv(available, discounted, (10 ** decimals) * scale, Math.Rounding.Ceil);
        if (allOfIt < repay) repay = allOfIt;
        if (maxRepay != 0 && maxRepay < repay) repay = maxRepay;
    }

    /// @dev `pool` must be the factory's pool of (collateral, settlement asset) at the fee tier it reports: the
    ///      factory maps a (pair, fee) only to the pool it deployed, so a contract posing as a pool fails here.
    function _checkPool(address pool, address collateral) private view {
        if (pool.code.length == 0) revert UnknownPool(pool, collateral);
        uint24 fee;
        try IUniswapV3PoolMinimal(pool).fee() returns (uint24 f) {
            fee = f;
        } catch {
            revert UnknownPool(pool, collateral);
        }
        if (factory.getPool(collateral, settlementAsset, fee) != pool) revert UnknownPool(pool, collateral);
    }
}
