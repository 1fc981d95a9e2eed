// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IMarginChecker} from "./IMarginChecker.sol";
import {IPoolEngine} from "./IPoolEngine.sol";

/// @title IMarginEngine
/// @notice Cross-margin linear perpetual markets quoted in USD, with the LiquidityPool as counterparty.
/// @dev Units: sizes are signed WAD units of the base asset (1e18 = one ETH long, -1e18 = one short);
///      prices are WAD USD per unit (from the OracleRouter); USD values are WAD; ratios are WAD
///      (1.5e18 = 150 %). The settlement asset (the pool's USDC) counts as exactly 1 USD: markets are quoted
///      in it and PnL settles in it. Every rounding goes against the account.
interface IMarginEngine is IMarginChecker, IPoolEngine {
    /// @notice Risk parameters of one market (all WAD unless said otherwise).
    /// @param asset Asset whose OracleRouter price the market tracks.
    /// @param baseMMR Maintenance margin rate floor.
    /// @param volK Weight of the volatility term `volK × σ × sqrt(horizon)`.
    /// @param sizeK Weight of the size term `sizeK × N / OIcap`.
    /// @param maxMMR Cap of the maintenance margin rate.
    /// @param imFactor Initial margin = maintenance rate × imFactor (> 1).
    /// @param feeRate Trading fee per unit of traded notional.
    /// @param oiCapFraction Max open interest per side, as a fraction of pool capital.
    /// @param maxFundingRate Funding rate cap per day.
    /// @param skewScale Skew (size units, WAD) at which the funding rate reaches its cap.
    struct MarketParams {
        address asset;
        uint64 baseMMR;
        uint64 volK;
        uint64 sizeK;
        uint64 maxMMR;
        uint64 imFactor;
        uint64 feeRate;
        uint64 oiCapFraction;
        uint64 maxFundingRate;
        uint128 skewScale;
    }

    /// @notice Running state of one market.
    /// @param fundingIndex Cumulative funding paid per unit of long size, WAD USD (shorts receive it).
    /// @param sumSizeEntry Σ size × entryPrice over open positions (WAD², exact).
    /// @param sumSizeFunding Σ size × fundingIndex at entry over open positions (WAD², exact).
    struct MarketState {
        int256 fundingIndex;
        uint64 lastFundingTime;
        uint256 longOI;
        uint256 shortOI;
        int256 sumSizeEntry;
        int256 sumSizeFunding;
    }

    struct Position {
        int256 size;
        uint256 entryPrice;
        int256 entryFunding;
    }

    /// @notice Protocol-wide risk parameters.
    /// @param liquidationTargetRatio Health a partial liquidation restores (WAD > 1).
    /// @param fullLiquidationHealth Below this health a liquidation closes everything.
    /// @param liquidationPenalty Penalty per unit of closed notional.
    /// @param keeperPenaltyShare Share of the penalty paid to the liquidator; the rest feeds insurance.
    /// @param keeperReward Flat USD reward of a liquidation; also reserved in every maintenance margin so
    ///        a liquidation is always worth calling.
    /// @param dustNotional Remaining notional (USD) below which a liquidation closes everything.
    /// @param collateralDiscount Discount at which seized collateral is sold for the settlement asset.
    /// @param volHorizon Seconds of volatility the maintenance margin must absorb.
    struct RiskParams {
        uint64 liquidationTargetRatio;
        uint64 fullLiquidationHealth;
        uint64 liquidationPenalty;
        uint64 keeperPenaltyShare;
        uint128 keeperReward;
        uint128 dustNotional;
        uint64 collateralDiscount;
        uint32 volHorizon;
    }

    /// @notice Valuation of one account, WAD USD (health WAD).
    struct AccountState {
        uint256 collateral; // C = Σ margin × price × haircut, rounded down
        int256 settlement; // S, signed
        int256 unrealisedPnl; // U, funding included, rounded down
        int256 equity; // E = C + S + U
        uint256 notional; // Σ |size| × price, rounded up
        uint256 maintenanceMargin; // MM, rounded up, keeper reward included when positions are open
        uint256 initialMargin; // IM, rounded up
        uint256 health; // E / MM rounded down; type(uint256).max when MM = 0
    }

    // ---------------------------------------------------------------- errors
    error NotAuthorized(uint256 accountId, address caller);
    error NotVault(address caller);
    error UnknownMarket(uint256 marketId);
    error TooManyMarkets(uint256 max);
    error ParamOutOfBounds(bytes32 name, uint256 value, uint256 min, uint256 max);
    error OracleUnhealthy(address asset);
    error ZeroSizeDelta();
    error PriceNotAcceptable(uint256 price, uint256 acceptablePrice);
    error PositionIncreasePaused();
    error OpenInterestCap(uint256 marketId, uint256 openInterestUsd, uint256 capUsd);
    error BelowInitialMargin(uint256 accountId, int256 equity, uint256 initialMargin);
    error NotLiquidatable(uint256 accountId, uint256 health);
    error NothingToBuy(uint256 accountId);
    error SlippageExceeded(uint256 amountOut, uint256 minAmountOut);
    error NotGuardian(address caller);
    error SettlementAssetNotListed(address asset);
    error ZeroAddress();

    // ---------------------------------------------------------------- events
    event MarketCreated(uint256 indexed marketId, MarketParams params);
    event MarketParamsSet(uint256 indexed marketId, MarketParams params);
    event RiskParamsSet(RiskParams params);
    event GuardianSet(address indexed guardian);
    event PausedSet(bool paused);
    event FundingAccrued(uint256 indexed marketId, int256 fundingIndex, int256 ratePerDay);
    /// @notice Every size change (trade, liquidation, rebalance reduce): enough to rebuild positions.
    event PositionModified(
        uint256 indexed accountId,
        uint256 indexed marketId,
        int256 sizeDelta,
        int256 newSize,
        uint256 price,
        int256 realisedPnl,
        uint256 fee
    );
    /// @notice The settlement balance changed by `delta` for `reason`; `settlement` is the new S.
    event SettlementChanged(uint256 indexed accountId, int256 delta, int256 settlement);
    event Liquidated(
        uint256 indexed accountId,
        address indexed liquidator,
        uint256 fraction,
        uint256 closedNotional,
        uint256 penalty,
        uint256 keeperPaid,
        uint256 healthBefore,
        uint256 healthAfter
    );
    event CollateralBought(
        uint256 indexed accountId, address indexed buyer, address indexed token, uint256 repaid, uint256 amountOut
    );
    event BadDebt(uint256 indexed accountId, uint256 amountUsd, uint256 fromInsurance);

    // ---------------------------------------------------------------- governance
    /// @notice Owner only. Bounds in Constants.sol; `ParamOutOfBounds(name, value, min, max)` outside them.
    function createMarket(MarketParams calldata params) external returns (uint256 marketId);
    function setMarketParams(uint256 marketId, MarketParams calldata params) external;
    function setRiskParams(RiskParams calldata params) external;
    function setGuardian(address guardian) external;
    /// @notice Guardian or owner: pauses opening and increasing positions only. Reducing, closing,
    ///         collateral, rebalancing and liquidation are never paused.
    function setPaused(bool paused) external;

    // ---------------------------------------------------------------- trading
    /// @notice Owner/operator. Trades `sizeDelta` at the oracle price. A buy reverts
    ///         `PriceNotAcceptable` above `acceptablePrice`, a sell below it. Fee = |Δ| × price × feeRate,
    ///         rounded up. Any trade that increases |size| (or flips it) requires equity >= IM afterwards,
    ///         open interest within the cap, and the engine not paused.
    function modifyPosition(uint256 accountId, uint256 marketId, int256 sizeDelta, uint256 acceptablePrice) external;

    /// @notice Permissionless. Settles the account's settlement balance against its USDC margin and the pool.
    function settle(uint256 accountId) external;

    // ---------------------------------------------------------------- liquidation
    /// @notice Permissionless when health < 1 and every oracle the account needs is healthy.
    ///         Closes the fraction of every position that restores `liquidationTargetRatio` (all of it
    ///         when health < fullLiquidationHealth or the rest would be dust), charges the penalty, pays
    ///         the liquidator `keeperReward + keeperPenaltyShare × penalty`, settles, and writes off
    ///         bad debt if nothing is left to cover it. Reverts `NotLiquidatable(accountId, health)`.
    function liquidate(uint256 accountId) external returns (uint256 fraction);

    /// @notice Permissionless while the account owes (S < 0) and either has no open position or is
    ///         liquidatable: pays `repay` USDC (capped at the debt) to the pool and receives `token`
    ///         margin at oracle price × (1 − collateralDiscount), rounded down; `SlippageExceeded` below
    ///         `minAmountOut`.
    function buyCollateral(uint256 accountId, address token, uint256 repay, uint256 minAmountOut)
        external
        returns (uint256 amountOut);

    // ---------------------------------------------------------------- views
    function accountState(uint256 accountId) external view returns (AccountState memory);
    /// @notice Health of many accounts in one call (reads every oracle once).
    function healthBatch(uint256[] calldata accountIds) external view returns (uint256[] memory);
    function position(uint256 accountId, uint256 marketId) external view returns (Position memory);
    function positionMask(uint256 accountId) external view returns (uint256);
    function marketParams(uint256 marketId) external view returns (MarketParams memory);
    function marketState(uint256 marketId) external view returns (MarketState memory);
    function marketCount() external view returns (uint256);
    function riskParams() external view returns (RiskParams memory);
    /// @notice Maintenance margin rate of `marketId` for a position of `notional` USD, WAD.
    function maintenanceRate(uint256 marketId, uint256 notional) external view returns (uint256);
    /// @notice The fraction `liquidate` would close now (0 if the account is not liquidatable).
    function liquidationFraction(uint256 accountId) external view returns (uint256);
}
