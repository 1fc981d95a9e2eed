// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AggregatorV3Interface} from "@chainlink/contracts/src/v0.8/shared/interfaces/AggregatorV3Interface.sol";

/// @title IOracleRouter
/// @notice One Chainlink `AggregatorV3Interface` feed per asset, validated on every read.
/// @dev Price scale: every price is USD per one whole unit of the asset, as an 18-decimal fixed-point
///      number (WAD), whatever the feed's own `decimals()` (normalised at read time; cached at `setFeed`).
///      Volatility is annualised, WAD (0.8e18 = 80 % a year).
interface IOracleRouter {
    /// @notice Risk settings of one asset's feed.
    /// @param feed Chainlink aggregator (or proxy) quoting the asset in USD.
    /// @param heartbeat Maximum age in seconds of an answer (`block.timestamp - updatedAt`).
    /// @param minPrice Lowest sane price, WAD, exclusive: an answer at or below it is rejected
    ///        (a feed pinned at its `minAnswer` is not a price).
    /// @param maxPrice Highest sane price, WAD, exclusive.
    /// @param maxJumpBps Largest move between two consecutive recorded observations before the
    ///        asset's circuit breaker trips, in basis points of the previous price.
    /// @param cooldown Seconds of consistent observations after a trip before the breaker resets.
    // Field order is part of the fixed ABI (tuple order), so the packing hint does not apply.
    // solhint-disable-next-line gas-struct-packing
    struct FeedParams {
        AggregatorV3Interface feed;
        uint32 heartbeat;
        uint256 minPrice;
        uint256 maxPrice;
        uint16 maxJumpBps;
        uint32 cooldown;
    }

    /// @notice EWMA volatility settings of one asset.
    /// @param tau Time constant of the EWMA in seconds: a sample `dt` seconds after the previous one gets
    ///        weight `dt / (tau + dt)`.
    /// @param floor Lowest volatility reported, annualised WAD (also the value before any return).
    /// @param cap Highest volatility reported, annualised WAD.
    /// @param interval Sampling grid in seconds of the feed's clock: a round is a volatility sample only when it
    ///        is the first in a new interval, so σ does not depend on how often anyone pokes.
    /// @param maxChangePerDay Most the maintenance volatility (the σ applied to open positions' maintenance
    ///        margin) may move per day, annualised WAD (default 0.2e18: 20 percentage points a day).
    struct VolParams {
        uint32 tau;
        uint64 floor;
        uint64 cap;
        uint32 interval;
        uint64 maxChangePerDay;
    }

    /// @notice Last observation recorded by `poke`, with the volatility state and breaker.
    ///      Three storage slots (README "Storage layout"). varianceRate fits 128 bits with room: one sample adds at
    ///      most r²/dt with r < 1 (a 100 % move trips the breaker long before) and dt >= 1 s, i.e. < 1e18.
    struct Observation {
        uint128 price; // WAD
        uint64 updatedAt; // feed's updatedAt of the recorded round
        uint64 breakerUntil; // breaker stays tripped until a consistent observation at or after this time
        uint128 varianceRate; // EWMA of squared simple returns per second over the sample grid, WAD
        uint128 samplePrice; // WAD price of the last volatility sample (the round in effect at `sampleAt`)
        bool tripped;
        uint64 sampleAt; // grid boundary (a multiple of `interval`) of the last volatility sample (0 = none yet)
        uint64 mmVol; // maintenance volatility at `mmVolAt`, annualised WAD
        uint64 mmVolAt; // when `mmVol` was last brought up to date (feed's clock, or block time at setFeed)
    }

    /// @notice What `roundAfter` found.
    enum RoundStatus {
        NotYet,
        Found,
        Unavailable
    }

    // ---------------------------------------------------------------- errors
    error FeedNotSet(address asset);
    error InvalidFeedParams(address asset);
    error InvalidVolParams(address asset);
    error FeedDecimalsTooHigh(address feed, uint8 decimals);
    error FeedCallFailed(address asset);
    error NonPositiveAnswer(address asset, int256 answer);
    error ZeroUpdatedAt(address asset);
    error FutureUpdatedAt(address asset, uint256 updatedAt);
    error StalePrice(address asset, uint256 updatedAt, uint256 heartbeat);
    error PriceOutOfBounds(address asset, uint256 price, uint256 minPrice, uint256 maxPrice);
    error CircuitBreakerTripped(address asset, uint256 until);
    /// @notice The feed's round is older than the observation already recorded: a feed never goes back in
    ///         time, so the answer is not used.
    error UpdatedAtWentBack(address asset, uint256 updatedAt, uint256 recordedAt);
    error SequencerDown();
    error SequencerGracePeriod(uint256 upSince, uint256 gracePeriod);
    /// @notice The constructor's sequencer grace period is above MAX_SEQUENCER_GRACE.
    error InvalidSequencerParams(address feed, uint32 gracePeriod);

    // ---------------------------------------------------------------- events
    event FeedSet(address indexed asset, address indexed feed, FeedParams params);
    event VolParamsSet(address indexed asset, VolParams params);
    /// @notice Emitted once, by the constructor (the sequencer feed and grace period are immutable).
    event SequencerFeedSet(address indexed feed, uint32 gracePeriod);
    /// @notice A poke saw an answer it would not use. `reason` is the 4-byte selector of the error
    ///         `price` would revert with.
    event PriceRejected(address indexed asset, bytes4 reason);
    event ObservationRecorded(address indexed asset, uint256 price, uint256 updatedAt, uint256 volatility);
    event BreakerTripped(address indexed asset, uint256 previousPrice, uint256 newPrice, uint256 jumpBps, uint256 until);
    event BreakerReset(address indexed asset, uint256 price);
    /// @notice A volatility sample was taken at grid boundary `updatedAt` (a multiple of `interval`) at `price`,
    ///         the round in effect then; `maintenanceVolatility` is σ_mm as brought up to that boundary.
    event VolatilitySampled(address indexed asset, uint256 price, uint256 updatedAt, uint256 maintenanceVolatility);
    /// @notice Governance reset the asset's volatility state to the floor.
    event VolatilityReset(address indexed asset);

    // ---------------------------------------------------------------- governance
    /// @notice Sets or replaces an asset's feed. Reverts `InvalidFeedParams` unless heartbeat > 0,
    ///         0 < minPrice < maxPrice, 0 < maxJumpBps <= 10_000; `FeedDecimalsTooHigh` above 18 decimals.
    ///         Also `InvalidFeedParams` for a zero asset or feed, maxPrice above MAX_FEED_PRICE = 2^126 (a position
    ///         keeps entryPrice − entryFunding in 128 bits: Constants.sol), or
    ///         cooldown above MAX_BREAKER_COOLDOWN. Gives the asset the default VolParams if it has none.
    ///         Resets the asset's observation (the next `poke` records a fresh one).
    function setFeed(address asset, FeedParams calldata params) external;

    /// @notice Sets an asset's EWMA volatility parameters. Reverts `InvalidVolParams` unless
    ///         tau > 0 and 0 < floor <= cap <= MAX_VOLATILITY.
    function setVolParams(address asset, VolParams calldata params) external;

    /// @notice L2 sequencer-uptime feed (answer 0 = up, 1 = down; `startedAt` = status change time); address(0)
    ///         disables the check (L1). Set once, by the constructor: no read pays a storage slot for it.
    function sequencerFeed() external view returns (AggregatorV3Interface);

    /// @notice Seconds after the sequencer comes back during which prices are refused (constructor, immutable).
    function sequencerGracePeriod() external view returns (uint32);

    // ---------------------------------------------------------------- reads
    /// @notice Validated price of `asset`, WAD USD per whole unit. Reverts with the named error for
    ///         every invalid answer, a down/grace sequencer, or a tripped breaker.
    /// @dev The views agree with `poke`: a valid round nobody has poked yet counts as `poke` would count it
    ///      (EWMA step, breaker trip or reset), and a price `poke` accepted earlier in the same transaction
    ///      is served again without reading the feed (prices are fixed for a transaction).
    function price(address asset) external view returns (uint256);

    /// @notice The id of the latest round of `asset`'s feed, as the feed (a Chainlink proxy) numbers it: a two-step
    ///         order records it, and fills at the round after it. Reverts `FeedNotSet`, `FeedCallFailed`.
    function latestRound(address asset) external view returns (uint80 roundId);

    /// @notice The fill round of an order requested at `time` when `roundId` was the latest round of `asset`'s
    ///         feed: the first of the next ids in its phase (a proxy numbers rounds (phase << 64) | n) whose `updatedAt`
    ///         is later than `time` (at most MAX_ROUNDS_IN_REQUEST_SECOND are skipped).
    ///         `NotYet` while it is not published; `Unavailable` when it cannot be found: the feed keeps no history
    ///         and a later round replaced it, the proxy moved to another phase (a new aggregator with its own history,
    ///         never searched) before the recorded phase had the round, or the asset's feed was replaced; `Found` with its `updatedAt` and its price (WAD; 0 when the answer is
    ///         not a sane price: non-positive or outside the feed's exclusive [minPrice, maxPrice] band). The round's
    ///         age, the sequencer and the breaker are not judged here: a fill pokes the current price with every
    ///         check. Reverts `FeedNotSet`, `FeedCallFailed` (the latest round cannot be read).
    function roundAfter(address asset, uint80 roundId, uint256 time)
        external
        view
        returns (RoundStatus status, uint256 priceWad, uint256 updatedAt);

    /// @notice `updatedAt` of the asset's current round as the router sees it: after a poke in the same transaction,
    ///         the recorded observation's; in a view, the feed's latest round when it is a positive answer newer than
    ///         the recorded one and not from the future, else the recorded one.
    function observedAt(address asset) external view returns (uint256);

    /// @notice Like `price` but never reverts: `ok` is false wherever `price` would revert.
    function tryPrice(address asset) external view returns (bool ok, uint256 priceWad);

    /// @notice Annualised volatility of `asset`, WAD, clamped to [floor, cap]: sqrt(varianceRate * 365 days)
    ///         of the EWMA `poke` maintains, including a valid round not yet poked; the floor until a second
    ///         observation. Reverts `FeedNotSet` for an asset without a feed.
    function volatility(address asset) external view returns (uint256);

    /// @notice The volatility applied to open positions' maintenance margin: it moves toward `volatility` no
    ///         faster than `maxChangePerDay` (continuously, block time), so a crash round moves health by price
    ///         alone and a rising requirement arrives over hours. Annualised WAD in [floor, cap].
    function maintenanceVolatility(address asset) external view returns (uint256);

    /// @notice `volatility` (target, applied to new risk) and `maintenanceVolatility` in one call.
    function volatilities(address asset) external view returns (uint256 target, uint256 maintenance);

    /// @notice Owner: the asset's volatility state back to the floor (never implicit: `setFeed`, with the same
    ///         feed or a new one, keeps it).
    function resetVolatility(address asset) external;

    /// @notice True while the sequencer is up and past its grace period (always true on L1).
    function sequencerUp() external view returns (bool);

    function feedParams(address asset) external view returns (FeedParams memory);
    function volParams(address asset) external view returns (VolParams memory);
    function observation(address asset) external view returns (Observation memory);

    // ---------------------------------------------------------------- keeper
    /// @notice Permissionless. Reads the feed; if its round is newer than the last recorded one and
    ///         valid, records it: updates the EWMA variance, trips the breaker on a jump above
    ///         `maxJumpBps`, resets it once `cooldown` has passed with consistent observations.
    ///         Emits `PriceRejected` instead of reverting on an invalid answer. An accepted price is cached
    ///         in transient storage: later pokes and reads in the same transaction return it unchanged.
    /// @return ok Whether `price(asset)` is usable after the poke.
    /// @return priceWad The usable price (0 when not ok).
    function poke(address asset) external returns (bool ok, uint256 priceWad);

    /// @notice `poke`, with the id of the feed's latest round as `latestRound(asset)` returns it in the same
    ///         transaction: a two-step order's request pokes its market and records the round it must fill after, in one
    ///         call to the router. Same checks, recording, events and transient cache as `poke`.
    /// @return ok Whether `price(asset)` is usable after the poke (as `poke`).
    /// @return priceWad The usable price (0 when not ok).
    /// @return roundId `latestRound(asset)` (0 when not ok).
    function pokeRound(address asset) external returns (bool ok, uint256 priceWad, uint80 roundId);

    /// @notice `poke`, with the asset's volatilities as `volatilities(asset)` returns them right after it in the same
    ///         transaction: the margin engine's door for a market asset, whose valuation needs both (one call to the
    ///         router instead of two). Same checks, recording, events and transient cache as `poke`.
    /// @return ok Whether `price(asset)` is usable after the poke (as `poke`).
    /// @return priceWad The usable price (0 when not ok).
    /// @return target `volatility(asset)` after the poke, annualised WAD in [floor, cap] (0 when not ok).
    /// @return maintenance `maintenanceVolatility(asset)` after the poke, annualised WAD in [floor, cap] (0 when not ok).
    function pokeMarket(address asset)
        external
        returns (bool ok, uint256 priceWad, uint256 target, uint256 maintenance);
}
