// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {AggregatorV3Interface} from "@chainlink/contracts/src/v0.8/shared/interfaces/AggregatorV3Interface.sol";

import {IOracleRouter} from "../interfaces/IOracleRouter.sol";
import {WadMath} from "../libraries/WadMath.sol";
import {
    WAD,
    BPS,
    SECONDS_PER_YEAR,
    MAX_DECIMALS,
    MAX_VOLATILITY,
    MAX_VOL_TAU,
    MAX_SEQUENCER_GRACE,
    MAX_BREAKER_COOLDOWN,
    MAX_FEED_PRICE,
    DEFAULT_VOL_TAU,
    DEFAULT_VOL_FLOOR,
    DEFAULT_VOL_CAP,
    DEFAULT_VOL_INTERVAL,
    DEFAULT_VOL_MAX_CHANGE,
    MIN_VOL_INTERVAL,
    MAX_VOL_INTERVAL,
    MIN_VOL_MAX_CHANGE,
    MAX_VOL_MAX_CHANGE,
    MAX_SQUARED_RETURN,
    MAX_SAMPLE_WALK,
    MAX_ROUNDS_IN_REQUEST_SECOND
} from "../libraries/Constants.sol";

/// @title OracleRouter
/// @notice Validated Chainlink prices (WAD), an EWMA volatility per asset and a per-asset circuit breaker.
/// @dev One calculation, several doors: `price`, `tryPrice`, `poke` and `pokeMarket` all go through `_read`, which
///      never reverts and reports the error `price` would raise as a selector plus its arguments.
///      Breaker timing uses the feed's clock: a trip at an observation with `updatedAt = t` lasts until
///      `t + cooldown`, and the breaker resets at the first consistent observation whose `updatedAt` is
///      at or after that time. Replays of a feed's history therefore trip and reset at the same rounds
///      whatever the block times of the pokes.
contract OracleRouter is IOracleRouter, Ownable2Step {
    using SafeCast for uint256;

    /// @dev `FeedParams` as stored: two slots (README "Storage layout"). Prices are WAD below 2^128
    ///      (`setFeed` checks maxPrice), times in seconds, the jump in basis points (<= 10,000).
    struct Feed {
        AggregatorV3Interface feed;
        uint32 heartbeat;
        uint16 maxJumpBps;
        uint32 cooldown;
        uint8 decimals; // feed decimals, cached at setFeed (<= 18)
        uint128 minPrice;
        uint128 maxPrice;
    }

    /// @dev The observation's hot slot: what every poke of a new round reads and writes (README "Storage layout").
    ///      Times are the feed's (or block) seconds, below 2^40 (year 36,812): updatedAt <= block.timestamp
    ///      (`FutureUpdatedAt`), breakerUntil <= block.timestamp + MAX_BREAKER_COOLDOWN, sampleAt <= updatedAt.
    struct ObsHot {
        uint128 price; // WAD, < maxPrice < 2^128
        uint40 updatedAt;
        uint40 breakerUntil;
        bool tripped;
        uint40 sampleAt;
    }

    /// @dev The volatility state: read by every poke of a new round (the event's volatility) and by `volatilities`,
    ///      written only when a volatility sample is taken (or by governance).
    struct ObsVol {
        uint128 varianceRate; // WAD per second, SafeCast checked
        uint64 mmVol; // annualised WAD, <= cap <= MAX_VOLATILITY = 1e19 < 2^64
        uint40 mmVolAt; // seconds, <= block.timestamp < 2^40
    }

    /// @dev Everything stored per asset: six slots. A poke of a new round reads five (the sample price only
    ///      when a volatility sample is due) and writes one (three when it samples).
    struct AssetConfig {
        Feed params;
        VolParams vol;
        ObsHot hot;
        ObsVol vs;
        uint128 samplePrice; // WAD, < maxPrice < 2^128: its own slot, read and written only by a sample
    }

    /// @dev Result of one validation pass. `err == 0` means valid. The remaining fields carry what the
    ///      named error needs (and the price/updatedAt for `poke`).
    struct ReadResult {
        bytes4 err;
        uint256 price; // WAD, set once normalised
        uint256 updatedAt;
        int256 answer;
        uint256 startedAt; // sequencer status-change time, for SequencerGracePeriod
        uint80 roundId; // the feed's latest round id
        bool isNew; // a valid round newer than the recorded observation: `obs` is what poke would record
        Observation obs; // the observation after this round (the recorded one when not new)
        uint256 jumpBps; // move from the recorded price, when new
    }

    mapping(address asset => AssetConfig) internal _assets;

    /// @notice L2 sequencer-uptime feed; address(0) on L1. Immutable: every price read checks it, and a storage slot
    ///         would cost a cold read (2,100 gas) on each, even on L1. A Chainlink sequencer feed is a proxy whose
    ///         address does not change; another one means another router (README "Storage layout").
    AggregatorV3Interface public immutable sequencerFeed;
    /// @notice Seconds after the sequencer comes back during which prices are refused (<= MAX_SEQUENCER_GRACE).
    uint32 public immutable sequencerGracePeriod;

    /// @dev Seed of the transient per-transaction poke cache slots.
    bytes32 private constant POKE_CACHE_SEED = keccak256("ballast.oracle.pokeCache");

    /// @param sequencerFeed_ L2 sequencer-uptime feed (answer 0 = up, 1 = down; `startedAt` = status change time);
    ///        address(0) on L1. Reverts `InvalidSequencerParams` if `sequencerGracePeriod_` > MAX_SEQUENCER_GRACE.
    constructor(address owner_, AggregatorV3Interface sequencerFeed_, uint32 sequencerGracePeriod_) Ownable(owner_) {
        if (sequencerGracePeriod_ > MAX_SEQUENCER_GRACE) {
            revert InvalidSequencerParams(address(sequencerFeed_), sequencerGracePeriod_);
        }
        sequencerFeed = sequencerFeed_;
        sequencerGracePeriod = sequencerGracePeriod_;
        emit SequencerFeedSet(address(sequencerFeed_), sequencerGracePeriod_);
    }

    // ---------------------------------------------------------------- governance

    /// @inheritdoc IOracleRouter
    function setFeed(address asset, FeedParams calldata params) external onlyOwner {
        if (
            asset == address(0) || address(params.feed) == address(0) || params.heartbeat == 0
                || params.minPrice == 0 || params.minPrice >= params.maxPrice
                || params.maxPrice > MAX_FEED_PRICE || params.maxJumpBps == 0 || params.maxJumpBps > BPS
                || params.cooldown > MAX_BREAKER_COOLDOWN
        ) revert InvalidFeedParams(asset);

        uint8 dec = params.feed.decimals();
        if (dec > MAX_DECIMALS) revert FeedDecimalsTooHigh(address(params.feed), dec);

        AssetConfig storage a = _assets[asset];
        bool newFeed = address(a.params.feed) != address(params.feed);
        a.params = Feed({
            feed: params.feed,
            heartbeat: params.heartbeat,
            maxJumpBps: params.maxJumpBps,
            cooldown: params.cooldown,
            decimals: dec,
            minPrice: uint128(params.minPrice), // < maxPrice <= MAX_FEED_PRICE = 2^126, checked above
            maxPrice: uint128(params.maxPrice)
        });
        if (a.vol.tau == 0) {
            a.vol = VolParams({
                tau: DEFAULT_VOL_TAU,
                floor: DEFAULT_VOL_FLOOR,
                cap: DEFAULT_VOL_CAP,
                interval: DEFAULT_VOL_INTERVAL,
                maxChangePerDay: DEFAULT_VOL_MAX_CHANGE
            });
            emit VolParamsSet(asset, a.vol);
            _resetVolatility(a);
        } else if (newFeed) {
            // Another feed: its rounds are not comparable with the recorded ones (ids, times), so the price
            // reference and the breaker start afresh; the volatility state is the asset's, and survives.
            _restartPriceReference(a);
        }
        // The same feed with new parameters keeps everything: a governance call never resets volatility.
        bytes32 slot = _pokeCacheSlot(asset); // a new feed is read afresh, even later in this transaction
        assembly ("memory-safe") {
            tstore(slot, 0)
        }
        emit FeedSet(asset, address(params.feed), params);
    }

    /// @inheritdoc IOracleRouter
    function setVolParams(address asset, VolParams calldata params) external onlyOwner {
        if (
            params.tau == 0 || params.tau > MAX_VOL_TAU || params.floor == 0 || params.floor > params.cap
                || params.cap > MAX_VOLATILITY || params.interval < MIN_VOL_INTERVAL
                || params.interval > MAX_VOL_INTERVAL || params.maxChangePerDay < MIN_VOL_MAX_CHANGE
                || params.maxChangePerDay > MAX_VOL_MAX_CHANGE
        ) revert InvalidVolParams(asset);
        AssetConfig storage a = _assets[asset];
        a.vol = params;
        // Before the first return the EWMA sits at the floor: keep that true for the new floor.
        if (a.hot.sampleAt == 0) {
            a.vs.varianceRate = uint128(_floorVarianceRate(params.floor));
            a.vs.mmVol = params.floor;
        }
        emit VolParamsSet(asset, params);
    }

    /// @inheritdoc IOracleRouter
    function resetVolatility(address asset) external onlyOwner {
        AssetConfig storage a = _assets[asset];
        if (address(a.params.feed) == address(0)) revert FeedNotSet(asset);
        _resetVolatility(a);
        emit VolatilityReset(asset);
    }

    // ---------------------------------------------------------------- reads

    /// @inheritdoc IOracleRouter
    function price(address asset) external view returns (uint256) {
        // Accepted by a poke earlier in this transaction: the same price, without reading the feed again.
        uint256 cached = _pokedPrice(asset);
        if (cached != 0) return cached - 1;
        ReadResult memory r = _read(asset);
        if (r.err != bytes4(0)) _revertWith(asset, r);
        return r.price;
    }

    /// @inheritdoc IOracleRouter
    function tryPrice(address asset) external view returns (bool ok, uint256 priceWad) {
        uint256 cached = _pokedPrice(asset);
        if (cached != 0) return (true, cached - 1);
        ReadResult memory r = _read(asset);
        if (r.err != bytes4(0)) return (false, 0);
        return (true, r.price);
    }

    /// @inheritdoc IOracleRouter
    function volatility(address asset) external view returns (uint256) {
        (uint256 target,) = volatilities(asset);
        return target;
    }

    /// @inheritdoc IOracleRouter
    function maintenanceVolatility(address asset) external view returns (uint256) {
        (, uint256 maintenance) = volatilities(asset);
        return maintenance;
    }

    /// @inheritdoc IOracleRouter
    function volatilities(address asset) public view returns (uint256 target, uint256 maintenance) {
        AssetConfig storage a = _assets[asset];
        if (address(a.params.feed) == address(0)) revert FeedNotSet(asset);
        Observation memory o;
        if (_pokedPrice(asset) != 0) {
            // Poked in this transaction: the recorded observation is current (the price is fixed per transaction).
            o = _loadObs(a);
        } else {
            // A valid round not yet poked counts as poke would count it: the view and the state change agree.
            ReadResult memory r = _read(asset);
            o = r.isNew ? r.obs : _loadObs(a);
        }
        (target, maintenance) = _volatilities(a.vol, o);
    }

    /// @inheritdoc IOracleRouter
    function sequencerUp() external view returns (bool) {
        (bytes4 err,) = _checkSequencer();
        return err == bytes4(0);
    }

    /// @inheritdoc IOracleRouter
    function feedParams(address asset) external view returns (FeedParams memory) {
        Feed storage f = _assets[asset].params;
        return FeedParams(f.feed, f.heartbeat, f.minPrice, f.maxPrice, f.maxJumpBps, f.cooldown);
    }

    /// @inheritdoc IOracleRouter
    function volParams(address asset) external view returns (VolParams memory) {
        return _assets[asset].vol;
    }

    /// @inheritdoc IOracleRouter
    function observation(address asset) external view returns (Observation memory o) {
        AssetConfig storage a = _assets[asset];
        o = _loadObs(a);
        o.samplePrice = a.samplePrice;
    }

    /// @notice Cached `decimals()` of the asset's feed (0 when no feed is set).
    function feedDecimals(address asset) external view returns (uint8) {
        return _assets[asset].params.decimals;
    }

    // ---------------------------------------------------------------- keeper

    /// @inheritdoc IOracleRouter
    function poke(address asset) external returns (bool ok, uint256 priceWad) {
        (ok, priceWad,,,) = _poke(asset, false);
    }

    /// @inheritdoc IOracleRouter
    function pokeRound(address asset) external returns (bool ok, uint256 priceWad, uint80 roundId) {
        (ok, priceWad,,, roundId) = _poke(asset, false);
        // A price served from this transaction's cache comes without the feed's read: read its latest round.
        if (ok && roundId == 0) (roundId,,) = _latestRound(_feedOf(asset), asset);
    }

    /// @inheritdoc IOracleRouter
    function pokeMarket(address asset)
        external
        returns (bool ok, uint256 priceWad, uint256 target, uint256 maintenance)
    {
        (ok, priceWad, target, maintenance,) = _poke(asset, true);
    }

    /// @dev The body of `poke` and `pokeMarket`. With `withVols`, an accepted price comes with the volatilities
    ///      `volatilities(asset)` reads after the poke for the rest of the transaction: of the observation this poke
    ///      read or recorded, or, for a price served from this transaction's cache, of the stored one (0 when not ok).
    ///      `roundId` is the feed's latest round as this poke read it: 0 when the price came from the cache (no read)
    ///      or is not ok.
    function _poke(address asset, bool withVols)
        private
        returns (bool ok, uint256 priceWad, uint256 target, uint256 maintenance, uint80 roundId)
    {
        // A price accepted earlier in this transaction is served from transient storage: a batch of
        // rebalances or liquidations reads each feed once, and every call in it sees the same price.
        uint256 cached = _pokedPrice(asset);
        if (cached != 0) {
            if (withVols) {
                AssetConfig storage c = _assets[asset];
                (target, maintenance) = _volatilities(c.vol, _loadObs(c));
            }
            return (true, cached - 1, target, maintenance, 0);
        }
        bytes32 slot = _pokeCacheSlot(asset);

        ReadResult memory r = _read(asset);
        if (r.err != bytes4(0) && r.err != CircuitBreakerTripped.selector) {
            // Keepers poke in batches: report, never revert.
            emit PriceRejected(asset, r.err);
            return (false, 0, 0, 0, 0);
        }

        AssetConfig storage a = _assets[asset];
        if (r.isNew) _record(asset, a, r);

        // After `_record` the stored observation is r.obs (and when not new, r.obs was read from it).
        if (r.obs.tripped) return (false, 0, 0, 0, 0);
        uint256 stored = r.price + 1; // 0 means "not cached"
        assembly ("memory-safe") {
            tstore(slot, stored)
        }
        if (withVols) (target, maintenance) = _volatilities(a.vol, r.obs);
        return (true, r.price, target, maintenance, r.roundId);
    }

    /// @dev The asset's accepted poke in this transaction, as price + 1 (0 = none).
    function _pokedPrice(address asset) private view returns (uint256 cached) {
        bytes32 slot = _pokeCacheSlot(asset);
        assembly ("memory-safe") {
            cached := tload(slot)
        }
    }

    /// @inheritdoc IOracleRouter
    function latestRound(address asset) external view returns (uint80 roundId) {
        (roundId,,) = _latestRound(_feedOf(asset), asset);
    }

    /// @inheritdoc IOracleRouter
    function roundAfter(address asset, uint80 roundId, uint256 time)
        external
        view
        returns (RoundStatus status, uint256 priceWad, uint256 updatedAt)
    {
        AggregatorV3Interface feed = _feedOf(asset);
        (uint80 latestId, int256 answer, uint256 latestAt) = _latestRound(feed, asset);
        updatedAt = latestAt;
        // A proxy numbers rounds (phase << 64) | n: the next rounds of the recorded one are n + 1, n + 2, … in its
        // phase, which the proxy still serves after it moves to a new phase (a new aggregator, with a history of its
        // own). A round the old phase does not have, or another feed's numbering (`setFeed`), is not searched for
        // elsewhere: the owed round cannot be found, so the order is not priced.
        if (latestId < roundId) return (RoundStatus.Unavailable, 0, 0);
        bool samePhase = latestId >> 64 == roundId >> 64;
        uint80 next = roundId;
        for (uint256 i; i < MAX_ROUNDS_IN_REQUEST_SECOND; ++i) {
            ++next;
            if (samePhase && next > latestId) return (RoundStatus.NotYet, 0, 0);
            bool read = true;
            int256 a = answer;
            uint256 at = updatedAt;
            if (next != latestId) (read, a, at) = _roundData(feed, next);
            // The feed cannot serve the round any more (no history, or a round it skipped).
            if (!read) return (RoundStatus.Unavailable, 0, 0);
            // A round of the request's own second (or earlier: a round of another feed's history) is not after it.
            if (at > time) {
                (answer, updatedAt) = (a, at);
                status = RoundStatus.Found;
                break;
            }
        }
        if (status != RoundStatus.Found) return (RoundStatus.Unavailable, 0, 0);
        Feed storage p = _assets[asset].params;
        uint256 scale = 10 ** (MAX_DECIMALS - p.decimals);
        if (answer <= 0 || uint256(answer) > type(uint128).max / scale) return (status, 0, updatedAt);
        priceWad = uint256(answer) * scale;
        // Exclusive band, as for every price the router serves.
        if (priceWad <= p.minPrice || priceWad >= p.maxPrice) priceWad = 0;
    }

    /// @inheritdoc IOracleRouter
    function observedAt(address asset) external view returns (uint256 at) {
        AssetConfig storage a = _assets[asset];
        at = a.hot.updatedAt;
        // Poked in this transaction: the recorded observation is the current round's.
        if (_pokedPrice(asset) != 0) return at;
        // A view: the latest round, as a poke would record it, when it is a plausible new one.
        AggregatorV3Interface feed = a.params.feed;
        if (address(feed) == address(0)) return at;
        try feed.latestRoundData() returns (uint80, int256 answer, uint256, uint256 updatedAt, uint80) {
            if (answer > 0 && updatedAt > at && updatedAt <= block.timestamp) at = updatedAt;
        } catch {}
    }

    function _feedOf(address asset) private view returns (AggregatorV3Interface feed) {
        feed = _assets[asset].params.feed;
        if (address(feed) == address(0)) revert FeedNotSet(asset);
    }

    /// @dev The feed's latest round (id, answer, updatedAt); `FeedCallFailed` when it cannot be read.
    function _latestRound(AggregatorV3Interface feed, address asset)
        private
        view
        returns (uint80 id, int256 answer, uint256 updatedAt)
    {
        try feed.latestRoundData() returns (uint80 i, int256 a, uint256, uint256 at, uint80) {
            return (i, a, at);
        } catch {
            revert FeedCallFailed(asset);
        }
    }

    /// @dev `getRoundData(id)`, never reverting: `read` is false when the call fails or the round has no `updatedAt`.
    function _roundData(AggregatorV3Interface feed, uint80 id)
        private
        view
        returns (bool read, int256 answer, uint256 updatedAt)
    {
        try feed.getRoundData(id) returns (uint80, int256 a, uint256, uint256 at, uint80) {
            return (at != 0, a, at);
        } catch {
            return (false, 0, 0);
        }
    }

    /// @dev Transient slot of an asset's accepted poke in this transaction (value = price + 1).
    function _pokeCacheSlot(address asset) private pure returns (bytes32) {
        return keccak256(abi.encode(asset, POKE_CACHE_SEED));
    }

    // ---------------------------------------------------------------- internals

    /// @dev Validates the sequencer, the feed's latest round, the sane-price band and the breaker, in
    ///      that order. Never reverts (a feed whose call reverts is reported as FeedCallFailed).
    function _read(address asset) internal view returns (ReadResult memory r) {
        (r.err, r.startedAt) = _checkSequencer();
        if (r.err != bytes4(0)) return r;

        AssetConfig storage a = _assets[asset];
        Feed storage p = a.params;
        if (address(p.feed) == address(0)) {
            r.err = FeedNotSet.selector;
            return r;
        }

        try p.feed.latestRoundData() returns (uint80 roundId, int256 answer, uint256, uint256 updatedAt, uint80) {
            r.roundId = roundId;
            r.answer = answer;
            r.updatedAt = updatedAt;
        } catch {
            r.err = FeedCallFailed.selector;
            return r;
        }

        if (r.answer <= 0) {
            r.err = NonPositiveAnswer.selector;
            return r;
        }
        if (r.updatedAt == 0) {
            r.err = ZeroUpdatedAt.selector;
            return r;
        }
        if (r.updatedAt > block.timestamp) {
            r.err = FutureUpdatedAt.selector;
            return r;
        }
        // Exactly `heartbeat` seconds old is still fresh; one second more is stale.
        if (block.timestamp - r.updatedAt > p.heartbeat) {
            r.err = StalePrice.selector;
            return r;
        }

        // Normalise to WAD. Exact: decimals <= 18, so this only multiplies. An answer too large to scale
        // saturates at type(uint256).max, which is above every maxPrice and is reported as out of bounds.
        uint256 scale = 10 ** (MAX_DECIMALS - a.params.decimals);
        uint256 raw = uint256(r.answer);
        r.price = raw > type(uint256).max / scale ? type(uint256).max : raw * scale;

        // Both bounds exclusive: a feed pinned at its min/max answer is not a price.
        if (r.price <= p.minPrice || r.price >= p.maxPrice) {
            r.err = PriceOutOfBounds.selector;
            return r;
        }

        _observe(a, r);
    }

    /// @dev The observation and breaker as they stand after the valid round in `r`: a view sees the EWMA
    ///      step and a trip (or reset) before anyone pokes.
    ///      A round older than the recorded one is refused (`UpdatedAtWentBack`); an answer that changed while
    ///      `updatedAt` did not is a new observation too (dt = 0), so the jump check sees it: nothing is
    ///      served that skipped validation.
    function _observe(AssetConfig storage a, ReadResult memory r) internal view {
        r.obs = _loadObs(a);
        if (r.updatedAt < r.obs.updatedAt) {
            r.err = UpdatedAtWentBack.selector;
            return;
        }
        if (r.updatedAt > r.obs.updatedAt || r.price != r.obs.price) {
            r.isNew = true;
            r.jumpBps = _advance(a, r.obs, r.roundId, r.price, r.updatedAt);
        }
        if (r.obs.tripped) r.err = CircuitBreakerTripped.selector;
    }

    /// @dev Sequencer rule (Aave's PriceOracleSentinel): down (answer 1) or within `gracePeriod` seconds
    ///      of coming back (`startedAt`) refuses prices. A sequencer feed whose call reverts, or an
    ///      uninitialised round (`startedAt == 0`), counts as down.
    ///      Exactly `gracePeriod` seconds after `startedAt` is still within the grace period.
    function _checkSequencer() internal view returns (bytes4 err, uint256 startedAt) {
        AggregatorV3Interface feed = sequencerFeed;
        if (address(feed) == address(0)) return (bytes4(0), 0);
        int256 answer;
        try feed.latestRoundData() returns (uint80, int256 answer_, uint256 startedAt_, uint256, uint80) {
            answer = answer_;
            startedAt = startedAt_;
        } catch {
            return (SequencerDown.selector, 0);
        }
        // startedAt == 0 is an uninitialised round (Chainlink's L2 guidance): not evidence the sequencer is up.
        if (answer == 1 || startedAt == 0) return (SequencerDown.selector, startedAt);
        // A `startedAt` in the future counts as within grace (no underflow, no overflow).
        if (startedAt > block.timestamp || block.timestamp - startedAt <= sequencerGracePeriod) {
            return (SequencerGracePeriod.selector, startedAt);
        }
        return (bytes4(0), startedAt);
    }

    /// @dev Reverts with the named error (and arguments) that `_read` reported.
    function _revertWith(address asset, ReadResult memory r) internal view {
        bytes4 e = r.err;
        Feed storage p = _assets[asset].params;
        if (e == SequencerDown.selector) revert SequencerDown();
        if (e == SequencerGracePeriod.selector) revert SequencerGracePeriod(r.startedAt, sequencerGracePeriod);
        if (e == FeedNotSet.selector) revert FeedNotSet(asset);
        if (e == FeedCallFailed.selector) revert FeedCallFailed(asset);
        if (e == NonPositiveAnswer.selector) revert NonPositiveAnswer(asset, r.answer);
        if (e == ZeroUpdatedAt.selector) revert ZeroUpdatedAt(asset);
        if (e == FutureUpdatedAt.selector) revert FutureUpdatedAt(asset, r.updatedAt);
        if (e == StalePrice.selector) revert StalePrice(asset, r.updatedAt, p.heartbeat);
        if (e == PriceOutOfBounds.selector) revert PriceOutOfBounds(asset, r.price, p.minPrice, p.maxPrice);
        if (e == UpdatedAtWentBack.selector) revert UpdatedAtWentBack(asset, r.updatedAt, _assets[asset].hot.updatedAt);
        revert CircuitBreakerTripped(asset, r.obs.breakerUntil);
    }

    /// @dev Records the observation `_read` computed for a valid round newer than the stored one, with the
    ///      breaker events.
    ///      Writes the hot slot; the volatility state and the sample price only when a sample was taken (the
    ///      sample time moves with every sample: `_step` writes b > the previous sampleAt) or none was recorded yet.
    function _record(address asset, AssetConfig storage a, ReadResult memory r) internal {
        ObsHot memory h = a.hot;
        uint256 prevPrice = h.price;
        bool wasTripped = h.tripped;
        uint256 prevSampleAt = h.sampleAt;
        Observation memory o = r.obs;
        a.hot = ObsHot({
            price: o.price,
            updatedAt: uint40(o.updatedAt),
            breakerUntil: uint40(o.breakerUntil),
            tripped: o.tripped,
            sampleAt: uint40(o.sampleAt)
        });
        // A sample moved the sample time; with none recorded yet (sampleAt 0) `_sample` set the reference price even
        // when the grid point is 0 (a feed clock below one interval): written as before the split.
        if (o.sampleAt != prevSampleAt || prevSampleAt == 0) {
            a.vs = ObsVol({varianceRate: o.varianceRate, mmVol: o.mmVol, mmVolAt: uint40(o.mmVolAt)});
            a.samplePrice = o.samplePrice;
        }
        if (r.jumpBps > a.params.maxJumpBps) emit BreakerTripped(asset, prevPrice, r.price, r.jumpBps, r.obs.breakerUntil);
        else if (wasTripped && !r.obs.tripped) emit BreakerReset(asset, r.price);
        emit ObservationRecorded(asset, r.price, r.updatedAt, _volatility(r.obs.varianceRate, a.vol));
        if (r.obs.sampleAt != prevSampleAt) {
            emit VolatilitySampled(asset, r.obs.samplePrice, r.obs.sampleAt, r.obs.mmVol);
        }
    }

    /// @dev The observation after a valid round (`p` at `updatedAt`, newer than the stored one): EWMA update,
    ///      breaker trip or reset. Pure arithmetic on the stored observation, shared by poke and the views.
    ///      `o` holds the stored observation (without the sample price, which `_sample` reads when it needs it)
    ///      and is advanced in place.
    function _advance(AssetConfig storage a, Observation memory o, uint80 roundId, uint256 p, uint256 updatedAt)
        internal
        view
        returns (uint256 jumpBps)
    {
        uint256 prev = o.price;

        if (o.updatedAt != 0) {
            // The breaker compares consecutive recorded rounds (older rounds are refused; a changed answer at an
            // unchanged updatedAt is compared too).
            uint256 move = p > prev ? p - prev : prev - p;

            // Rounded up: any move strictly above maxJumpBps trips (ceil(x) > m <=> x > m for integer m).
            jumpBps = WadMath.mulDivUp(move, BPS, prev);
            if (jumpBps > a.params.maxJumpBps) {
                o.tripped = true;
                o.breakerUntil = uint64(updatedAt + a.params.cooldown);
            } else if (o.tripped && updatedAt >= o.breakerUntil) {
                o.tripped = false;
            }
        }
        _sample(a, o, roundId, p, updatedAt);

        // p < maxPrice <= type(uint128).max (setFeed) and updatedAt <= block.timestamp: both casts are safe.
        o.price = uint128(p);
        o.updatedAt = uint64(updatedAt);
    }

    /// @dev Volatility samples on a fixed grid of `interval` seconds of the feed's clock, priced from the feed's
    ///      own history: the sample at a boundary B is the answer of the last round with `updatedAt <= B`, found by
    ///      walking back from the latest round with `getRoundData` (rounds outside the sane band stop the walk). However often anyone pokes, and whenever (as
    ///      long as the feed still serves the rounds, at most MAX_SAMPLE_WALK rounds back), the same feed history
    ///      gives the same samples, so no one moves σ by poking or by withholding pokes. A boundary whose round
    ///      cannot be read is skipped: its return merges into the next sample's, measured over the longer dt; the
    ///      poke's last boundary is then priced by the nearest round after it (so a feed without history still
    ///      moves σ, at the cost of depending on when it is read).
    ///      Before each EWMA step the maintenance volatility moves toward the target that held until then, no
    ///      faster than `maxChangePerDay` (it never jumps with the sample that raises the target).
    function _sample(AssetConfig storage a, Observation memory o, uint80 roundId, uint256 p, uint256 updatedAt)
        internal
        view
    {
        uint256 interval = a.vol.interval;
        uint256 lastBoundary = updatedAt - updatedAt % interval;
        if (o.sampleAt == 0) {
            // First sample after setFeed / reset: the reference for the next return, at the current grid point.
            o.samplePrice = uint128(p);
            o.sampleAt = uint64(lastBoundary);
            return;
        }
        uint256 firstBoundary = uint256(o.sampleAt) + interval;
        if (firstBoundary > lastBoundary) return;
        o.samplePrice = a.samplePrice; // the reference of the next return: its slot is read only now

        // The rounds from the latest back to the one in effect at the first boundary (newest first).
        uint256[MAX_SAMPLE_WALK] memory times;
        uint256[MAX_SAMPLE_WALK] memory prices;
        uint256 n = _walkBack(a, roundId, p, updatedAt, firstBoundary, times, prices);

        // Boundaries oldest first; `k` walks the collected rounds from the oldest one.
        uint256 k = n;
        for (uint256 b = firstBoundary; b <= lastBoundary; b += interval) {
            // The round in effect at b: the newest collected round with time <= b.
            while (k > 1 && times[k - 2] <= b) --k;
            if (times[k - 1] <= b) {
                _step(a.vol, o, prices[k - 1], b);
            } else if (b == lastBoundary) {
                // The feed cannot show what stood at the last boundary (no history, or more than MAX_SAMPLE_WALK
                // rounds since): the oldest round it did show, the nearest after the boundary, prices it. So a
                // feed without history still moves σ, at the cost of depending on when it is read.
                _step(a.vol, o, prices[n - 1], b);
            }
            // Otherwise not reachable: the return merges into the next boundary's sample.
        }
    }

    /// @dev Collects (updatedAt, WAD price) of the latest round and of earlier rounds until one is at or before
    ///      `until` (that one included), newest first; stops at MAX_SAMPLE_WALK rounds, or at a round the feed
    ///      cannot serve, that is not a valid positive answer, or that lies outside the sane band (a round the
    ///      router would refuse never prices a sample). Returns how many were collected.
    function _walkBack(
        AssetConfig storage a,
        uint80 roundId,
        uint256 p,
        uint256 updatedAt,
        uint256 until,
        uint256[MAX_SAMPLE_WALK] memory times,
        uint256[MAX_SAMPLE_WALK] memory prices
    ) internal view returns (uint256 n) {
        times[0] = updatedAt;
        prices[0] = p;
        n = 1;
        uint256 scale = 10 ** (MAX_DECIMALS - a.params.decimals);
        AggregatorV3Interface feed = a.params.feed;
        while (times[n - 1] > until && n < MAX_SAMPLE_WALK && roundId > 1) {
            --roundId;
            try feed.getRoundData(roundId) returns (uint80, int256 answer, uint256, uint256 at, uint80) {
                if (answer <= 0 || at == 0 || at > times[n - 1] || uint256(answer) > type(uint128).max / scale) {
                    break;
                }
                // A round the router would refuse (outside the sane band) is never a sample: the walk stops.
                uint256 px = uint256(answer) * scale;
                if (px <= a.params.minPrice || px >= a.params.maxPrice) break;
                times[n] = at;
                prices[n] = px;
                ++n;
            } catch {
                break;
            }
        }
    }

    /// @dev One sample at boundary `b` with price `p`: σ_mm moves toward the target that held until `b`, then the
    ///      EWMA takes the return since the previous sample.
    function _step(VolParams storage v, Observation memory o, uint256 p, uint256 b) internal view {
        uint256 target = _volatility(o.varianceRate, v);
        uint256 elapsed = b > o.mmVolAt ? b - o.mmVolAt : 0;
        o.mmVol = uint64(_approach(o.mmVol, target, v, elapsed));
        if (b > o.mmVolAt) o.mmVolAt = uint64(b); // never backwards: no stretch of time counts twice

        uint256 prev = o.samplePrice;
        uint256 move = p > prev ? p - prev : prev - p;
        // Squared simple return r^2 = (move / prev)^2 as WAD, rounded up (more volatility means more
        // margin: rounding favours the protocol). Saturated so an absurd answer cannot overflow.
        uint256 r2 = move >= prev * 1e9 ? MAX_SQUARED_RETURN : WadMath.mulDivUp(move * move, WAD, prev * prev);
        // EWMA of the per-second variance with alpha = dt / (tau + dt), dt >= interval > 0:
        //   v' = (1 - alpha) v + alpha r^2 / dt = (tau v + r^2) / (tau + dt)
        // One division, rounded up for the same reason as r^2.
        uint256 dt = b - o.sampleAt;
        uint256 tau = v.tau;
        o.varianceRate = Math.ceilDiv(tau * o.varianceRate + r2, tau + dt).toUint128();
        o.samplePrice = uint128(p);
        o.sampleAt = uint64(b);
    }

    /// @dev `from` moved toward `to` by at most maxChangePerDay × elapsed / 1 day, clamped to [floor, cap]. A rise
    ///      rounds its step up and a fall rounds it down: the maintenance volatility errs high (for the protocol).
    function _approach(uint256 from, uint256 to, VolParams storage v, uint256 elapsed) internal view returns (uint256 vol) {
        if (to > from) {
            uint256 step = Math.ceilDiv(uint256(v.maxChangePerDay) * elapsed, 1 days);
            vol = to - from > step ? from + step : to;
        } else {
            uint256 step = uint256(v.maxChangePerDay) * elapsed / 1 days;
            vol = from - to > step ? from - step : to;
        }
        if (vol < v.floor) vol = v.floor;
        if (vol > v.cap) vol = v.cap;
    }

    /// @dev Target and maintenance volatility now, from observation `o` (`volatilities` and `pokeMarket`): the
    ///      target from its EWMA variance, the maintenance one moved toward it since `mmVolAt`.
    function _volatilities(VolParams storage v, Observation memory o)
        internal
        view
        returns (uint256 target, uint256 maintenance)
    {
        target = _volatility(o.varianceRate, v);
        maintenance = _approach(o.mmVol, target, v, block.timestamp - o.mmVolAt);
    }

    /// @dev sqrt(varianceRate * SECONDS_PER_YEAR) as WAD, clamped to [floor, cap]. The square root rounds
    ///      down by less than 1 wei; the variance it reads was rounded up, so the error is nil in practice.
    function _volatility(uint256 varianceRate, VolParams storage v) internal view returns (uint256 vol) {
        vol = WadMath.wSqrtDown(varianceRate * SECONDS_PER_YEAR);
        if (vol < v.floor) vol = v.floor;
        if (vol > v.cap) vol = v.cap;
    }

    /// @dev The volatility state back to the floor (first feed of an asset, or governance's explicit reset).
    function _resetVolatility(AssetConfig storage a) internal {
        delete a.hot;
        delete a.samplePrice;
        uint64 floor = a.vol.floor;
        a.vs = ObsVol({
            varianceRate: uint128(_floorVarianceRate(floor)),
            mmVol: floor,
            mmVolAt: uint40(block.timestamp)
        });
    }

    /// @dev A new feed: price reference, breaker and sample grid start afresh; the EWMA variance stays and the
    ///      maintenance volatility is carried to now (it keeps moving toward the same target).
    function _restartPriceReference(AssetConfig storage a) internal {
        ObsVol storage o = a.vs;
        uint256 target = _volatility(o.varianceRate, a.vol);
        o.mmVol = uint64(_approach(o.mmVol, target, a.vol, block.timestamp - o.mmVolAt));
        o.mmVolAt = uint40(block.timestamp);
        delete a.hot; // price, updatedAt, breakerUntil, tripped, sampleAt
        delete a.samplePrice;
    }

    /// @dev The stored observation as the interface's struct, without the sample price (left 0: only
    ///      `observation()` and a due sample read its slot).
    function _loadObs(AssetConfig storage a) internal view returns (Observation memory o) {
        ObsHot memory h = a.hot;
        ObsVol memory v = a.vs;
        o.price = h.price;
        o.updatedAt = h.updatedAt;
        o.breakerUntil = h.breakerUntil;
        o.tripped = h.tripped;
        o.sampleAt = h.sampleAt;
        o.varianceRate = v.varianceRate;
        o.mmVol = v.mmVol;
        o.mmVolAt = v.mmVolAt;
    }

    /// @dev Per-second variance whose annualised volatility is `floor`: floor^2 / year, WAD. Rounded down
    ///      (by < 1 wei a second) so that `volatility()` reads exactly the floor before any return: the
    ///      square root lands just below the floor and the clamp lifts it back, never above it.
    function _floorVarianceRate(uint256 floor) internal pure returns (uint256) {
        return WadMath.mulDivDown(floor, floor, WAD * SECONDS_PER_YEAR);
    }
}
