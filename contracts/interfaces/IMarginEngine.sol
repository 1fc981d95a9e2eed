// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IPoolEngine} from "./IPoolEngine.sol";
import {IOracleRouter} from "./IOracleRouter.sol";

/// @title IMarginEngine
/// @notice Cross-margin linear perpetual markets quoted in USD, with the LiquidityPool as counterparty.
/// @dev Units: sizes are signed WAD units of the base asset (1e18 = one ETH long, -1e18 = one short);
///      prices are WAD USD per unit (from the OracleRouter); USD values are WAD; ratios are WAD
///      (1.5e18 = 150 %). The settlement asset (the pool's USDC) counts as exactly 1 USD: markets are quoted
///      in it and PnL settles in it. Every rounding goes against the account.
interface IMarginEngine is IPoolEngine {
    /// @notice Risk parameters of one market (all WAD unless said otherwise).
    /// @param asset Asset whose OracleRouter price the market tracks.
    /// @param baseMMR Maintenance margin rate floor.
    /// @param volK Weight of the volatility term `volK × σ × sqrt(horizon)`.
    /// @param sizeK Weight of the size term `sizeK × N / oiCapUsd`.
    /// @param maxMMR Cap of the maintenance margin rate.
    /// @param imFactor Initial margin = maintenance rate × imFactor (> 1).
    /// @param feeRate Trading fee per unit of traded notional.
    /// @param oiCapFraction New risk gate: an order's request (an instant fill of the test engine) may grow a side's
    ///        open interest, pending reservations included, only up to this fraction of pool capital (pool capital
    ///        gates new risk, never an existing requirement).
    /// @param maxFundingRate Funding rate cap per day.
    /// @param imVolFloor Stress volatility of new risk (annualised, WAD): IM prices a position at no less than
    ///        this volatility, so it caps leverage in a calm market (`1 / (imFactor × mmr(imVolFloor))`) and
    ///        leaves room for the maintenance volatility to rise under an open position. 0 = no floor.
    /// @param skewScale Skew (size units, WAD) at which the funding rate reaches its cap.
    /// @param oiCapUsd Open-interest cap per side in USD (WAD, > 0), set by governance: a trade may not grow a
    ///        side beyond it, and it is the denominator of the size term. Never live pool capital, so no LP
    ///        action and no other account's action moves an account's requirement.
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
        uint64 imVolFloor;
        uint128 skewScale;
        uint128 oiCapUsd;
    }

    /// @notice Running state of one market.
    /// @param fundingIndex Cumulative funding paid per unit of long size, WAD USD (shorts receive it).
    /// @param longEntryNetSum / shortEntryNetSum Σ size × (entryPrice − entryFunding) over the side's open positions
    ///        (WAD², exact; shorts have negative sizes): the side's open PnL is size × (P − F) − this sum, so the pool
    ///        values each side on its own (one side's losses never offset the other side's profits).
    /// @param fundingRate The daily funding rate now, clamp((longOI − shortOI) / skewScale × maxFundingRate,
    ///        ±maxFundingRate) (WAD; positive: longs pay). It changes only with the open interests or the parameters,
    ///        and each change accrues funding first, so it is stored at each change and a valuation reads it with
    ///        the index instead of the open interests and parameters.
    ///        Stored packed (README "Storage layout"): fundingIndex, lastFundingTime and fundingRate share a slot, so do
    ///        the two open interests.
    struct MarketState {
        int128 fundingIndex;
        uint64 lastFundingTime;
        int64 fundingRate;
        uint128 longOI;
        uint128 shortOI;
        int256 longEntryNetSum;
        int256 shortEntryNetSum;
    }

    /// @notice One open position, as `position()` shows it (stored as AccountLogic.PositionSlot, README "Storage
    ///         layout": size and entryPrice − entryFunding in the slot every valuation reads, the price apart).
    /// @param size Signed size, WAD units of the market's asset (long > 0).
    /// @param entryPrice WAD USD per unit, the price of the last trade (the position is re-entered at each trade).
    /// @param entryFunding The market's funding index at the last trade.
    struct Position {
        int128 size;
        uint128 entryPrice;
        int256 entryFunding;
    }

    /// @notice Protocol-wide risk parameters.
    /// @param liquidationTargetRatio Ratio a partial liquidation (or a rescue) restores: equity over the maintenance
    ///        margin at the current volatility, Σ N·mmr(max(σ, σ_mm)) + keeperReward (WAD > 1).
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

    /// @notice A pending two-step order, as `order(orderId)` shows it. @param accountId / marketId / sizeDelta /
    ///         acceptablePrice / reduceOnly As requested. @param requestedAt Block time of the request: the fill
    ///         round's `updatedAt` must be later. @param afterRound The market feed's latest round id at the request:
    ///         the order fills at the first round after it published after `requestedAt`. @param deadline Last
    ///         `updatedAt` the fill round may have. @param fee Escrowed execution fee, settlement-token units.
    struct Order {
        uint256 accountId;
        uint256 marketId;
        int256 sizeDelta;
        uint256 acceptablePrice;
        uint256 requestedAt;
        uint256 afterRound;
        uint256 deadline;
        uint256 fee;
        bool reduceOnly;
    }

    /// @notice An account's rebalancing policy (README "Rebalancing"), set by its owner or an operator.
    /// @param actions Allowed actions, a bitmask of TOP_UP (1), REDUCE (2), RELEASE (4), and REDUCE_FIRST (8: with
    ///        REDUCE, reduce before topping up above health 1) (Constants.sol); 0 opts the account out (the rest of
    ///        the policy is then cleared).
    /// @param cooldown Seconds that must pass between two rebalances.
    /// @param triggerRatio Health below which the account is rebalanced (WAD, > 1).
    /// @param targetRatio Health a rebalance restores (WAD, >= trigger + MIN_REBALANCE_BAND, <= 10).
    /// @param releaseRatio Health above which excess margin is released down to target (WAD; 0 = off,
    ///        else >= target + MIN_REBALANCE_BAND, <= 16). Each ratio is a whole number of millionths (a multiple
    ///        of 1e12: the policy is one storage slot).
    /// @param maxFeeUsd Most a keeper may be paid for one rebalance of this account (WAD USD).
    /// @param topUpAssets Reserve assets used for top-ups, in the owner's order (at most 8); RELEASE returns margin
    ///        of these assets to the reserve, in the same order.
    struct RebalancePolicy {
        uint8 actions;
        uint32 cooldown;
        uint64 triggerRatio;
        uint64 targetRatio;
        uint64 releaseRatio;
        uint128 maxFeeUsd;
        address[] topUpAssets;
    }

    /// @notice What a rebalance of one account does, in this order (`IRebalancer.needsRebalance` shows it before it
    ///         is sent): TOP_UP (`amounts` of `assets` reserve→margin) and/or REDUCE (close `reduceFraction` of
    ///         every position at the trading fee), or RELEASE alone (`amounts` of `assets` margin→reserve); then
    ///         credit `keeper` `feeUsd` from the account.
    struct RebalancePlan {
        uint8 action;
        address[] assets;
        uint256[] amounts;
        uint256 reduceFraction;
        uint256 feeUsd;
        address keeper;
    }

    // ---------------------------------------------------------------- errors
    error NotAuthorized(uint256 accountId, address caller);
    /// @notice A trade would leave a position of 2^127 units (WAD) or more: a size is stored in 128 bits.
    error PositionTooLarge(uint256 marketId, int256 size);
    /// @dev OpenZeppelin Ownable's, raised by the owner-only functions (declared so tools can decode them).
    error OwnableUnauthorizedAccount(address account);
    error OwnableInvalidOwner(address owner);
    error UnknownMarket(uint256 marketId);
    error TooManyMarkets(uint256 max);
    error ParamOutOfBounds(bytes32 name, uint256 value, uint256 min, uint256 max);
    /// @notice A market's WAD fraction that is not a whole number of `unit` (1e9: a billionth): market parameters are
    ///         stored at that precision, three slots a market (README "Storage layout").
    error ParamPrecision(bytes32 name, uint256 value, uint256 unit);
    error OracleUnhealthy(address asset);
    error ZeroSizeDelta();
    error OrderNotFound(uint256 orderId);
    /// @notice The round after `afterRound` (the feed's latest at the request) is not published yet, and the deadline
    ///         has not passed.
    error OrderNotReady(uint256 orderId, uint256 afterRound);
    /// @notice Cancel reason: the fill round came after the deadline (`roundUpdatedAt` = 0: none came).
    error OrderExpired(uint256 orderId, uint256 deadline, uint256 roundUpdatedAt);
    /// @notice Cancel reason: the feed can no longer serve the fill round (it keeps no history and a later round has
    ///         replaced it): the order is not priced at any other round.
    error OrderRoundUnavailable(uint256 orderId, uint256 afterRound);
    /// @notice The account already has `orderId` pending, an order that may add risk: one at a time, and no margin
    ///         release while it waits (its fill is judged on that margin).
    error OrderPending(uint256 accountId, uint256 orderId);
    /// @notice Cancel reason: the fill round's answer is not a sane price (non-positive or outside the feed's band).
    error OrderPriceInvalid(uint256 orderId, uint256 roundUpdatedAt);
    /// @notice Cancel reason: a reduce-only order found no position to reduce (or one on the same side).
    error NothingToReduce(uint256 accountId, uint256 marketId);
    error InvalidDeadline(uint256 deadline, uint256 earliest, uint256 latest);
    error TooManyPendingOrders(uint256 accountId, uint256 max);
    error OrderFeeTooHigh(uint256 fee, uint256 max);
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
    error PolicyTriggerTooLow(uint256 triggerRatio);
    error PolicyBandTooNarrow(uint256 lowerRatio, uint256 upperRatio, uint256 minBand);
    error PolicyTargetTooHigh(uint256 targetRatio, uint256 max);
    error PolicyUnknownActions(uint8 actions);
    error PolicyReleaseRatioMissing();
    error PolicyTopUpAssetsMissing();
    error PolicyTooManyAssets(uint256 count, uint256 max);
    error PolicyAssetNotListed(address asset);
    error PolicyDuplicateAsset(address asset);
    error PolicyCooldownTooLong(uint256 cooldown, uint256 max);
    error PolicyFeeTooHigh(uint256 maxFeeUsd, uint256 max);
    /// @notice A policy ratio that is not a whole number of millionths (`unit` = 1e12 in WAD): the policy is stored
    ///         in one slot, its ratios in millionths (README "Storage layout").
    error PolicyRatioPrecision(uint256 ratio, uint256 unit);
    error PolicyReleaseTooHigh(uint256 releaseRatio, uint256 max);
    /// @notice `claimKeeperRewards` by a caller with no reward credited.
    error NothingToClaim(address keeper);
    /// @notice The extension given to the engine was built for another oracle, pool or gas asset, or its custody
    ///         facet was.
    error ExtensionMismatch(address extension);
    // The rebalance postconditions: checked after every rebalance on a fresh valuation (defence in depth: the
    // engine's own plan meets them by construction).
    error RebalanceLowersHealth(uint256 accountId, uint256 healthBefore, uint256 healthAfter);
    error RebalanceBelowTarget(uint256 accountId, uint256 healthAfter, uint256 minHealth);
    error RebalanceLeavesDebt(uint256 accountId, int256 equity);
    /// @notice The account is below health 1 but its own reserve, under its policy, can lift it to the
    ///         liquidation target: the rescue (`IRebalancer.rebalance`) comes first.
    error RescueAvailable(uint256 accountId);
    /// @notice A rebalance of an account below health 1 (a rescue) must leave it at or above the liquidation target,
    ///         measured as a liquidation would: equity over the maintenance margin at the current volatility.
    error RescueFallsShort(uint256 accountId, uint256 ratioAfter, uint256 liquidationTarget);

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
    event OrderRequested(
        uint256 indexed orderId,
        uint256 indexed accountId,
        uint256 indexed marketId,
        int256 sizeDelta,
        uint256 acceptablePrice,
        uint256 deadline,
        bool reduceOnly,
        uint256 afterRound,
        uint256 fee
    );
    /// @notice Filled at `price`, the answer of the round published at `roundUpdatedAt`; `keeper` earned the fee.
    event OrderExecuted(
        uint256 indexed orderId, uint256 indexed accountId, address indexed keeper, uint256 price, uint256 roundUpdatedAt
    );
    /// @notice Cancelled for `reason` (the 4-byte selector of the named error); `keeper` earned the fee.
    event OrderCancelled(uint256 indexed orderId, uint256 indexed accountId, address indexed keeper, bytes4 reason);
    event OrderFeeSet(uint256 fee);
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
    event RebalancePolicySet(uint256 indexed accountId, RebalancePolicy policy);
    /// @notice `amount` settlement-token units of a liquidation reward or rebalance fee were credited to `keeper`;
    ///         `balance` is what it can now claim.
    event KeeperRewardCredited(address indexed keeper, uint256 amount, uint256 balance);
    event KeeperRewardsClaimed(address indexed keeper, address indexed to, uint256 amount);

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
    /// @notice Owner/operator. Requests a two-step order (README "Orders"): records the market feed's latest round
    ///         (`OracleRouter.latestRound`), and a keeper fills the order at the round after it — a round the trader
    ///         could not have seen. Escrows `orderFee()` settlement-token units from the account's USDC reserve for the
    ///         keeper who settles the order (fills or cancels it).
    ///         At the fill a buy is refused above `acceptablePrice`, a sell below it; fee = |Δ| × fill price ×
    ///         feeRate, rounded up; a fill that increases |size| (or flips it) requires equity >= IM afterwards (the
    ///         traded market valued at the fill price) and the engine not paused. A `reduceOnly` order never
    ///         increases or flips the position: it is clamped to the position at the fill, and cancelled if there is
    ///         nothing to reduce. An order that is not reduce-only reserves |sizeDelta| of open interest on its side
    ///         (`pendingOpenInterest`) until it is settled, and is refused unless the side's open interest, every
    ///         reservation and its own, at the current price rounded up, stay within min(oiCapUsd, oiCapFraction ×
    ///         pool capital rounded down) — checked here, not at the fill, so no later change of pool capital can
    ///         cancel it. Such an order must also be backed now: equity >= the initial margin of the whole account
    ///         with |Δ| added to its position in the order's market (|size| + |Δ|: the reservation on top of the
    ///         position), every market at its stress-floor volatility `imVolFloor`, at current prices (+
    ///         keeperReward). Reduce with `reduceOnly`: it needs no backing.
    ///         Reverts `ZeroSizeDelta`, `PositionTooLarge`, `InvalidDeadline` (deadline must be in
    ///         (now, now + MAX_ORDER_LIFETIME]), `TooManyPendingOrders`, `OrderPending` (an order that may add risk is
    ///         already waiting: one at a time), `InsufficientReserve` (the fee), `PositionIncreasePaused` for an order
    ///         that would increase risk while paused (reductions, closes and reduce-only orders are always accepted),
    ///         `OpenInterestCap(marketId, openInterestUsd, capUsd)` and `BelowInitialMargin(accountId, equity,
    ///         required)` (an order that is not reduce-only, above),
    ///         `OracleUnhealthy` (such an order while the market's price is invalid), and the oracle's `FeedNotSet` /
    ///         `FeedCallFailed`.
    /// @return orderId Its id (ids start at 1 and increase).
    function requestOrder(
        uint256 accountId,
        uint256 marketId,
        int256 sizeDelta,
        uint256 acceptablePrice,
        uint256 deadline,
        bool reduceOnly
    ) external returns (uint256 orderId);

    /// @notice Permissionless. Settles a pending order and credits its fee to the caller (claimable with
    ///         `claimKeeperRewards`), whichever way it goes:
    ///         - fills it at the first round after the one recorded at the request and published after the request
    ///           (`OracleRouter.roundAfter`), if that round came at or before the deadline: `OrderExecuted`;
    ///         - cancels it (`OrderCancelled` with the selector of the named reason) if no round came by the deadline
    ///           or the fill round came after it, or past the deadline the fill cannot be priced (`OrderExpired`), the
    ///           feed can no longer serve the fill round (`OrderRoundUnavailable`: no history, a new aggregator phase,
    ///           a replaced feed), its answer is not a sane price (`OrderPriceInvalid`), or the fill is
    ///           refused (`PriceNotAcceptable`, `BelowInitialMargin`, `PositionIncreasePaused`, `PositionTooLarge`,
    ///           `NothingToReduce`; the open-interest cap was checked at the request).
    ///         Settling the order releases the open interest its request reserved.
    ///         Reverts `OrderNotFound` (unknown or already settled: a second keeper racing for the same order),
    ///         `OrderNotReady` (the fill round is not published and the deadline has not passed), and bubbles any
    ///         other failure (an unhealthy oracle, out of gas): the order then stays pending.
    /// @return filled True when the order was filled, false when cancelled.
    function executeOrder(uint256 orderId) external returns (bool filled);

    /// @notice A pending order (all zero once settled or never requested).
    function order(uint256 orderId) external view returns (Order memory);
    /// @notice The ids of an account's pending orders (at most MAX_PENDING_ORDERS), in no particular order.
    function pendingOrders(uint256 accountId) external view returns (uint256[] memory orderIds);
    /// @notice The id the last request received (0 before the first).
    function lastOrderId() external view returns (uint256);
    /// @notice Execution fee escrowed by each new order, settlement-token units.
    function orderFee() external view returns (uint256);
    /// @notice Σ fees escrowed by pending orders, settlement-token units (held here, part of no balance).
    function orderEscrow() external view returns (uint256);
    /// @notice Open interest reserved in `marketId` by pending orders that are not reduce-only, WAD units: Σ |sizeDelta|
    ///         of the pending buys (`long`) and of the pending sells (`short`). A request checks the side's open
    ///         interest plus this plus its own size against the cap; settling an order (fill, cancel or expiry)
    ///         releases exactly what its request reserved. 0 for a market that does not exist.
    function pendingOpenInterest(uint256 marketId) external view returns (uint256 long, uint256 short);
    /// @notice Owner. Sets the execution fee of new orders; reverts `OrderFeeTooHigh` above MAX_ORDER_FEE_USD.
    function setOrderFee(uint256 fee) external;

    /// @notice Permissionless. Settles the account's settlement balance against its USDC margin and the pool,
    ///         and writes off the debt of an account left with no position and no margin (insurance first).
    function settle(uint256 accountId) external;

    // ---------------------------------------------------------------- liquidation
    /// @notice Permissionless when health < 1 and every market oracle of the account's positions is healthy
    ///         (collateral whose oracle is invalid counts as zero: it never blocks a liquidation).
    ///         Closes the least fraction of every position that restores `liquidationTargetRatio` against
    ///         the maintenance margin at the current volatility (all of it when health <
    ///         fullLiquidationHealth or the rest would be dust), charges the penalty, credits
    ///         the liquidator `keeperReward + keeperPenaltyShare × penalty` (claimable), settles, and writes off
    ///         bad debt if nothing is left to cover it. Reverts `NotLiquidatable(accountId, health)`, and
    ///         `RescueAvailable(accountId)` while the account's own reserve can rescue it (`rescueAvailable`).
    function liquidate(uint256 accountId) external returns (uint256 fraction);

    /// @notice Permissionless while the account owes (S < 0) and either has no open position or is
    ///         liquidatable: pays `repay` USDC (capped at the debt) to the pool and receives `token`
    ///         margin at oracle price × (1 − collateralDiscount), rounded down; `SlippageExceeded` below
    ///         `minAmountOut`; `RescueAvailable(accountId)` while the account has positions and its own reserve can
    ///         rescue it (as `liquidate`: the rescue has priority).
    function buyCollateral(uint256 accountId, address token, uint256 repay, uint256 minAmountOut)
        external
        returns (uint256 amountOut);

    // ---------------------------------------------------------------- rebalancing
    /// @notice Owner/operator of the account: sets its rebalancing policy (`actions = 0` opts out and clears it).
    ///         Reverts with the `Policy*` error naming the first broken rule (bounds in Constants.sol). The
    ///         rebalance itself is the engine's (`IRebalancer`, same address).
    function setRebalancePolicy(uint256 accountId, RebalancePolicy calldata policy) external;

    // ---------------------------------------------------------------- keeper rewards
    /// @notice Liquidation rewards and rebalance fees are credited to the keeper inside the engine (no token moves
    ///         on the hot path); the keeper claims them here, paid by the pool, to `to`. Reverts `NothingToClaim`.
    function claimKeeperRewards(address to) external returns (uint256 amount);
    /// @notice Settlement-token units `keeper` can claim.
    function keeperRewardsOf(address keeper) external view returns (uint256);
    /// @notice Σ over keepers of unclaimed rewards: held by the pool but not LP capital (`ILiquidityPool.capital`).
    function totalKeeperRewards() external view returns (uint256);

    /// @notice Permissionless: pokes every oracle the account needs (its markets, then its margin assets);
    ///         reverts `OracleUnhealthy(asset)` on the first invalid market oracle (an invalid collateral
    ///         oracle only makes that collateral count as zero).
    function pokeAccount(uint256 accountId) external;

    function rebalancePolicy(uint256 accountId) external view returns (RebalancePolicy memory);
    /// @notice Timestamp of the account's last rebalance (0 = never).
    function lastRebalanceAt(uint256 accountId) external view returns (uint256);
    /// @notice Earliest timestamp of the account's next rebalance: last + cooldown, and at least the next
    ///         second (never twice in one block); 0 when never rebalanced.
    function rebalanceReadyAt(uint256 accountId) external view returns (uint256);
    /// @notice The account's valuation, the trading fee of closing all its positions (Σ feeRate × N, rounded
    ///         up) and its maintenance margin at the current volatility (Σ N·mmr(max(σ, σ_mm)) + keeperReward,
    ///         rounded up: what a liquidation, and a rescue pre-empting one, restores the liquidation target
    ///         against; 0 while health >= 1, where no rescue needs it): the inputs of the rebalance plan. Reads
    ///         prices like `accountState`.
    function rebalanceInputs(uint256 accountId)
        external
        view
        returns (AccountState memory state, uint256 closeFeeUsd, uint256 maintenanceNowUsd);

    // ---------------------------------------------------------------- views
    /// @notice The contract that serves the engine's cold functions (governance, views, `needsRebalance`,
    ///         `checkUpkeep`): the engine delegates every selector it does not know to it, so both share one storage
    ///         and one address.
    function extension() external view returns (address);
    /// @notice Governance (Ownable2Step): the owner sets risk parameters, within their on-chain bounds.
    function owner() external view returns (address);
    function pendingOwner() external view returns (address);
    function transferOwnership(address newOwner) external;
    function acceptOwnership() external;
    /// @notice Who may pause opening and increasing positions (besides the owner), and whether they are paused.
    function guardian() external view returns (address);
    function paused() external view returns (bool);
    function oracle() external view returns (IOracleRouter);
    /// @notice The pool's asset (USDC): markets settle in it and it counts as exactly 1 USD.
    function settlementAsset() external view returns (address);
    /// @notice The LiquidityPool, counterparty of every position.
    function pool() external view returns (address);
    /// @notice Valuation of the account at current oracle prices; collateral whose oracle is invalid counts as
    ///         zero. Reverts `OracleUnhealthy(asset)` when a position's market oracle is invalid.
    function accountState(uint256 accountId) external view returns (AccountState memory);
    /// @notice Health of many accounts in one call (reads every oracle once). Never reverts for one account:
    ///         `priced[i]` is false (and `healths[i]` 0) when a position of account i has no valid price.
    function healthBatch(uint256[] calldata accountIds)
        external
        view
        returns (uint256[] memory healths, bool[] memory priced);
    function position(uint256 accountId, uint256 marketId) external view returns (Position memory);
    function positionMask(uint256 accountId) external view returns (uint256);
    function marketParams(uint256 marketId) external view returns (MarketParams memory);
    function marketState(uint256 marketId) external view returns (MarketState memory);
    function marketCount() external view returns (uint256);
    function riskParams() external view returns (RiskParams memory);
    /// @notice Maintenance margin rate of `marketId` for a position of `notional` USD, WAD, at the oracle's
    ///         maintenance volatility (the bounded-speed σ applied to open positions).
    function maintenanceRate(uint256 marketId, uint256 notional) external view returns (uint256);
    /// @notice Σ over accounts of their unpaid debt (negative settlement balance), WAD USD: realised losses the
    ///         pool is owed but has not collected yet. Counted with open losses in the pool's mint valuation.
    function totalDebtUsd() external view returns (uint256);
    /// @notice True when the account is below health 1 and its own reserve, under its policy, can lift it to the
    ///         liquidation target against the maintenance margin at the current volatility, with a settlement
    ///         unit to spare for rounding (opted in, TOP_UP allowed, maxFeeUsd >= keeperReward,
    ///         cooldown passed): `liquidate` then reverts `RescueAvailable` and a rebalance rescues it.
    function rescueAvailable(uint256 accountId) external view returns (bool);
    /// @notice The fraction `liquidate` would close now (0 if the account is not liquidatable or can be rescued).
    function liquidationFraction(uint256 accountId) external view returns (uint256);
}
