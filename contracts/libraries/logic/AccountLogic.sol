// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {IMarginEngine} from "../../interfaces/IMarginEngine.sol";
import {IPoolEngine} from "../../interfaces/IPoolEngine.sol";
import {IVault} from "../../interfaces/IVault.sol";
import {IOracleRouter} from "../../interfaces/IOracleRouter.sol";
import {ILiquidityPool} from "../../interfaces/ILiquidityPool.sol";
import {WadMath} from "../WadMath.sol";
import {TOP_UP, REDUCE, POLICY_RATIO_UNIT} from "../Constants.sol";

/// @title AccountLogic
/// @notice The margin engine's storage layout and the internal account calculations every engine module
///         shares: valuation (README "Architecture": account valuation), oracle reads, trades, funding and settlement.
/// @dev Internal functions only: they are compiled into the engine and into each external `*Logic` library
///      that uses them, so there is one source for every formula whichever contract runs it.
library AccountLogic {
    using SafeCast for uint256;
    using SafeCast for int256;
    using WadMath for uint256;
    using SafeERC20 for IERC20;

    uint256 internal constant WAD = 1e18;
    int256 internal constant IWAD = 1e18;
    /// @dev Unit of a market's stored WAD fractions (MarketSlot): a billionth.
    uint256 internal constant NANO = 1e9;
    /// @dev Listing index of the settlement asset: the engine's constructor lists it first, and nothing unlists.
    uint256 internal constant SETTLEMENT_INDEX = 0;
    /// @dev Prices cached per call: at most every listed asset plus every market asset.
    uint256 internal constant MAX_CACHED = 32; // = MAX_ASSETS + MAX_MARKETS (array lengths need a literal)

    /// @notice Every storage variable of the engine, in one struct the `*Logic` libraries receive by slot.
    struct Storage {
        /// @dev A mapping, not an array: a valuation reads a market's parameters without the array's length slot
        ///      (every caller has checked `marketId < marketCount`, or read it from a position mask).
        mapping(uint256 marketId => MarketSlot) markets;
        uint256 marketCount;
        mapping(uint256 marketId => IMarginEngine.MarketState) marketStates;
        mapping(uint256 accountId => mapping(uint256 marketId => PositionSlot)) positions;
        /// @dev Settlement balance, open-position mask and last rebalance of an account, in one slot.
        mapping(uint256 accountId => AccountSlot) accounts;
        IMarginEngine.RiskParams risk;
        /// @dev The keeper fee's parameters and sqrt(volHorizon / year), read together by every rebalance.
        HotParams hot;
        /// @dev One slot whatever the number of top-up assets (`policyOf` decodes it; `loadPolicy` gives the ABI struct).
        mapping(uint256 accountId => PolicySlot) policies;
        /// @dev Σ over accounts of max(0, −settlement), WAD USD: debts realised but not yet collected (or written
        ///      off). The pool's mint valuation counts them, so no new LP buys into a receivable at a discount.
        uint256 totalDebtUsd;
        /// @dev Most accounts one `checkUpkeep` returns.
        uint256 upkeepSize;
        /// @dev Who `performUpkeep` credits (address(0): the caller).
        address upkeepFeeRecipient;
        /// @dev Liquidation rewards and rebalance fees credited and not yet claimed, settlement-token units.
        mapping(address keeper => uint256) keeperRewards;
        /// @dev The insurance fund, settlement-token units: part of `pool.setAside` (Σ keeperRewards is the rest), read
        ///      only where insurance itself changes or is shown.
        uint256 insurance;
        // ------------------------------------------------------------- custody (IVault, served at this address)
        mapping(uint256 accountId => address) owners;
        mapping(uint256 accountId => mapping(address operator => bool)) operators;
        uint256 accountCount;
        /// @dev Listed assets by index (bit `index` of an account's margin mask): token, decimals and haircut in
        ///      one slot, so a valuation reads one slot per held asset for all three. A fixed array: no length slot.
        Asset[16] assetList; // 16 = MAX_ASSETS (array lengths need a literal)
        uint256 assetCount;
        /// @dev index + 1 of a listed token; 0 = not listed.
        mapping(address token => uint256) assetSlot;
        mapping(uint256 accountId => mapping(address token => Balance)) balances;
        /// @dev Tokens of each kind this contract accounts for: Σ reserves + margins, plus the pool's balance and the
        ///      escrowed order fees for the settlement asset. Every token transfer in or out moves it; internal moves do not.
        mapping(address token => uint256) tracked;
        /// @dev The pool's tokens held here: LP capital, insurance and unclaimed keeper rewards.
        PoolSlot pool;
        // ------------------------------------------------------------- two-step orders (README "Orders")
        /// @dev A pending order's fields, in the cell its entry of the account's pending list names (`PendingList`):
        ///      cells are reused, so a request writes two nonzero slots (README "Storage layout").
        mapping(uint256 accountId => OrderSlot[8]) orderCells;
        /// @dev The account of every order id, eight per slot (`orderAccountOf`).
        mapping(uint256 idBlock => uint256) orderAccounts;
        /// @dev Ids of an account's pending orders (<= MAX_PENDING_ORDERS), packed: see `PendingList`.
        mapping(uint256 accountId => PendingList) pendingOrders;
        OrderBook orderBook;
        /// @dev Open interest reserved per market by pending orders that may add risk (README "Orders", finding N3).
        mapping(uint256 marketId => PendingOI) pendingOI;
    }

    /// @notice An account's pending order ids, two slots (README "Storage layout"). `head`: the count in bits 0..7
    ///         (<= MAX_PENDING_ORDERS = 8), ids 0..3 at bits 8 + 56·i, and the order cell of entries 0..7 at bits
    ///         232 + 3·i; `tail`: ids 4..7 at bits 56·(i − 4). Ids are uint56 (a request past 2^56 − 1 ids reverts with
    ///         SafeCast's named error: 7.2e16 requests). Entries at or beyond the count are stale and never read. Entry 0
    ///         holds an id (>= 1) from the account's first request on and is only ever overwritten by another id, so
    ///         `head` never returns to zero: a request writes a nonzero slot (2,900 gas) where a dynamic array's
    ///         length and first element went from zero (2 × 20,000), at the price of the two 4,800-gas refunds a
    ///         settlement used to get for zeroing them. An entry's cell (0..7, `orderCells`) moves with its id when the
    ///         last entry takes a settled one's place; a request takes the lowest cell no pending entry names, so an
    ///         account's orders reuse the cells of its settled ones.
    struct PendingList {
        uint256 head;
        uint256 tail;
    }

    /// @notice Open interest that pending orders may add to a market, one slot (README "Storage layout"): Σ |sizeDelta|
    ///         of the pending orders that are not reduce-only, on their side (a buy: long, a sell: short), WAD units.
    ///         Reserved and checked against the open-interest cap at the request, released when the order is settled.
    /// @param long / short Each stored as the reservation + 1 (`createMarket` writes 1 and 1, the market's first
    ///        write of this slot), so the slot is never zero again: a request writes a nonzero slot (2,900 gas) instead
    ///        of a zero one (20,000). Each < 2^128: every reservation was within the cap when it was made ((OI +
    ///        pending + |Δ|) × price <= oiCapUsd), and the write is checked (SafeCast) besides.
    struct PendingOI {
        uint128 long;
        uint128 short;
    }

    /// @notice A pending two-step order, in two slots (README "Storage layout").
    /// @param accountId < 2^32 (checked: accounts are created one per transaction). @param marketId < MAX_MARKETS.
    /// @param requestedAt Block time of the request (32 bits: until the year 2106): the fill round must be later.
    /// @param lifetime deadline − requestedAt, <= MAX_ORDER_LIFETIME = 86,400 < 2^24.
    /// @param fee Settlement-token units <= MAX_ORDER_FEE_USD / scale <= 1e20 < 2^72 (100 USD of an 18-decimal token).
    /// @param afterRound The feed's latest round id at the request (a Chainlink proxy's uint80 id): the order fills at
    ///        the round after it.
    /// @param sizeDelta |Δ| <= type(int128).max, checked at the request.
    /// @param acceptablePrice WAD; a larger request is stored as 2^128 − 1, which changes nothing: every sane price
    ///        is below maxPrice <= 2^128 − 1, so a buy limit there accepts all and a sell limit there accepts none.
    struct OrderSlot {
        uint32 accountId;
        uint8 marketId;
        bool reduceOnly;
        uint32 requestedAt;
        uint24 lifetime;
        uint72 fee;
        uint80 afterRound;
        int128 sizeDelta;
        uint128 acceptablePrice;
    }

    /// @notice Order counters, one slot. @param lastOrderId Id of the last request (ids start at 1).
    /// @param fee Execution fee of new orders, settlement-token units (<= 1e20 < 2^72, as above).
    /// @param escrow Σ fees of pending orders, settlement-token units (checked into 96 bits: 7.9e28 units).
    struct OrderBook {
        uint64 lastOrderId;
        uint72 fee;
        uint96 escrow;
    }

    /// @notice A listed collateral asset, in one slot (README "Storage layout").
    /// @param token The ERC-20. @param decimals Its `decimals()` read at listing, 1..18.
    /// @param haircut Fraction of its oracle value counted as collateral, WAD <= 1e18 < 2^64.
    struct Asset {
        address token;
        uint8 decimals;
        uint64 haircut;
    }

    /// @notice An account's reserve and margin of one token share a slot (a top-up or release writes it once): both
    ///         in token units, each below 2^128 (`BalanceTooLarge` otherwise; the 18-decimal supply that could reach
    ///         it is 3.4e20 whole tokens).
    struct Balance {
        uint128 reserve;
        uint128 margin;
    }

    /// @notice The pool's tokens held by the engine, settlement-asset units, in one slot (README "Storage layout").
    /// @param balance Everything held for the pool: LP capital + insurance + unclaimed keeper rewards (< 2^128:
    ///        3.4e32 USDC). @param setAside The part that is not LP capital: insurance + Σ keeperRewards (< 2^128,
    ///        checked). One slot for both, so crediting a keeper writes the slot a fee payment writes anyway.
    struct PoolSlot {
        uint128 balance;
        uint128 setAside;
    }

    /// @notice Parameters every valuation or rebalance reads, in one slot (README "Storage layout").
    /// @param baseFeeUsd / gasUnits The keeper fee's (IRebalancer.FeeParams; baseFeeUsd <= MAX_REBALANCE_FEE =
    ///        1e21 < 2^80, gasUnits <= MAX_REBALANCE_GAS_UNITS).
    /// @param sqrtHorizon sqrt(volHorizon / year), WAD rounded up, derived from `risk.volHorizon` when it is set:
    ///        volHorizon <= MAX_VOL_HORIZON (30 days) keeps it below 0.29e18, far inside 64 bits (18.4e18).
    /// @param keeperReward `risk.keeperReward`, written with it by `setRiskParams` (<= MAX_KEEPER_REWARD = 1e21 <
    ///        2^80): every valuation reserves it, so the hot path reads it here, not from the risk parameters' slot.
    struct HotParams {
        uint80 baseFeeUsd;
        uint32 gasUnits;
        uint64 sqrtHorizon;
        uint80 keeperReward;
    }

    /// @notice An account's rebalancing policy as the engine computes with it (`policyOf` decodes the stored
    ///         `PolicySlot` into it): the fields of `IMarginEngine.RebalancePolicy`, WAD ratios, with the top-up
    ///         assets as listing indices instead of an array of addresses.
    /// @param assetIndices Listing index of the k-th top-up asset in bits [4k, 4k + 4).
    /// @param assetCount Number of top-up assets, <= MAX_POLICY_ASSETS.
    /// @param ownerActedAt Block time of the owner's last action that can call for a REDUCE — the policy set, a margin
    ///        release, a reserve withdrawal, an order requested or filled: a rebalance REDUCEs only on a round of
    ///        every held market published after it (README "Orders").
    struct Policy {
        uint8 actions;
        uint32 cooldown;
        uint64 triggerRatio;
        uint64 targetRatio;
        uint64 releaseRatio;
        uint128 maxFeeUsd;
        uint64 assetIndices;
        uint8 assetCount;
        uint40 ownerActedAt;
    }

    /// @notice An account's policy as stored: one slot (README "Storage layout"), so a rebalance reads one cold slot
    ///         for it. `setPolicy` checks every field fits; nothing is rounded.
    /// @param actions Bitmask <= ALL_ACTIONS. @param cooldown Seconds <= MAX_REBALANCE_COOLDOWN = 86,400 < 2^24.
    /// @param triggerPpm / targetPpm / releasePpm The WAD ratios in millionths (ratio / POLICY_RATIO_UNIT, exact:
    ///        `PolicyRatioPrecision` otherwise): target <= 10e18 and release <= MAX_RELEASE_RATIO = 16e18, so each
    ///        is <= 16,000,000 < 2^24.
    /// @param maxFeeUsd WAD USD <= MAX_REBALANCE_FEE = 1e21 < 2^72. @param ownerActedAt Block time, < 2^40.
    /// @param assetCount <= MAX_POLICY_ASSETS = 8. @param assetIndices 8 listing indices (< MAX_ASSETS = 16) of 4 bits.
    struct PolicySlot {
        uint8 actions;
        uint24 cooldown;
        uint24 triggerPpm;
        uint24 targetPpm;
        uint24 releasePpm;
        uint72 maxFeeUsd;
        uint40 ownerActedAt;
        uint8 assetCount;
        uint32 assetIndices;
    }

    /// @notice A market's parameters as stored: three slots instead of the ABI struct's four (README "Storage
    ///         layout"), the first two holding everything a valuation reads (the third: the funding and the new-risk
    ///         gate's parameters, read by trades and governance). The WAD fractions are kept in billionths (value /
    ///         NANO; `GovernanceLogic` refuses a value that is not a whole number of them, `ParamPrecision`, so nothing
    ///         is rounded) and read back × NANO, exact. Widths from the bounds in Constants.sol: baseMMR <= 0.5e9,
    ///         maxMMR and sizeK <= 1e9 (32 bits, < 4.29e9); volK, imFactor and imVolFloor <= 1e10 and oiCapFraction
    ///         <= 5e9 (40 bits, < 1.1e12); feeRate <= 1e7 and maxFundingRate <= 1e8 (32 bits). oiCapUsd WAD <=
    ///         MAX_OI_CAP_USD = 2^96 − 1 (79 billion USD); skewScale WAD as in the ABI struct (128 bits).
    struct MarketSlot {
        address asset;
        uint32 baseMMR;
        uint32 maxMMR;
        uint32 sizeK;
        uint40 volK;
        uint40 imFactor;
        uint40 imVolFloor;
        uint32 feeRate;
        uint96 oiCapUsd;
        uint40 oiCapFraction;
        uint32 maxFundingRate;
        uint128 skewScale;
    }

    /// @notice One open position as stored (README "Storage layout"): a valuation reads the first slot only.
    /// @param size Signed size, WAD units (|size| < 2^127: `PositionTooLarge`).
    /// @param entryNet entryPrice − entryFunding of the last trade, WAD USD per unit: the position's PnL is
    ///        size·(P − F) − size·entryNet, the same integer as size·(P − entry) − size·(F − F_entry). SafeCast
    ///        checked into 128 bits: every price is below MAX_FEED_PRICE = 2^126 (`OracleRouter.setFeed`), so it fits
    ///        while the funding index is above −2^126 (a price up to 2^128 would block partial closes: Constants.sol).
    /// @param entryPrice The last trade's price (< maxPrice <= 2^126), for `position()` (which shows entryFunding =
    ///        entryPrice − entryNet); no valuation reads it.
    ///      A closed position (size 0) keeps its entry fields, stale and read nowhere, so a reopen writes nonzero slots.
    struct PositionSlot {
        int128 size;
        int128 entryNet;
        uint128 entryPrice;
    }

    /// @notice What the engine keeps per account besides positions and policy, packed into one slot (every
    ///         state change of an account reads it; README "Storage layout").
    /// @param settlement S, WAD USD, signed: realised PnL, fees and funding not yet settled against margin. Bounded
    ///        by what positions within the markets' open-interest caps can realise, far inside ±1.7e38 (±1.7e20 USD).
    /// @param lastRebalanceAt Block time of the account's last rebalance (0 = never).
    /// @param positionMask Bit m set iff the account has an open position in market m (MAX_MARKETS = 16 < 32).
    /// @param marginMask Bit i set iff the account has margin in listed asset i (MAX_ASSETS = 16 < 32).
    struct AccountSlot {
        int128 settlement;
        uint64 lastRebalanceAt;
        uint32 positionMask;
        uint32 marginMask;
    }

    /// @notice The engine's immutables, passed to the external `*Logic` libraries (which cannot read them).
    struct Env {
        IOracleRouter oracle;
        address pool; // the LiquidityPool share token, counterparty of every position (its tokens are held here)
        address settlementAsset; // the pool's asset (USDC): counts as exactly 1 USD
        uint256 settlementScale; // 10^(18 − settlement decimals): WAD USD per settlement-token unit
        address gasAsset; // asset whose USD price converts gas into the keeper fee (WETH)
    }

    /// @dev Everything one valuation (or a batch of them) needs, read once: a price cache keyed by asset. Poke or
    ///      view selects the door: state changes poke the oracle, views read it. A cached price of 0 means the asset's oracle is invalid in this call: collateral
    ///      in it counts as zero, and a position in it cannot be valued (`OracleUnhealthy`).
    ///      Requirements never read pool capital: nothing an LP does moves an account's health.
    struct Ctx {
        Env env;
        address[MAX_CACHED] pxAsset;
        uint256[MAX_CACHED] pxValue;
        uint256[MAX_CACHED] volTarget; // 0 = not read yet (a volatility is never below its floor > 0), or unpriced
        uint256[MAX_CACHED] volMaint;
        uint256 pxCount;
    }

    // =================================================================== valuation

    function newCtx(Env memory env) internal pure returns (Ctx memory ctx) {
        ctx.env = env;
    }

    /// @dev Account valuation exactly as the README states it. Reads only cached prices (every price the account
    ///      needs must have been loaded by `pokeAccount` or `viewAccountPrices`). Collateral whose oracle is
    ///      invalid counts as zero: that can only make the account look poorer, so an outage of a collateral
    ///      oracle never blocks a liquidation that the healthy oracles justify.
    function valuation(Storage storage s, Ctx memory ctx, uint256 accountId)
        internal
        view
        returns (IMarginEngine.AccountState memory st)
    {
        return valuation(s, ctx, accountId, true);
    }

    /// @dev `valuation`, with the initial margin only `withIM` (else `st.initialMargin` stays 0): callers that judge
    ///      health, equity and the maintenance margin only pass false (liquidation, a rebalance plan of a policy without
    ///      RELEASE, the state after a REDUCE, a request's backing, the health views). Every other field is the same
    ///      integer either way; leaving the IM out saves its second requirement per position (about 2,100 gas on a
    ///      one-position account). One copy of the code, the choice made at run time.
    function valuation(Storage storage s, Ctx memory ctx, uint256 accountId, bool withIM)
        internal
        view
        returns (IMarginEngine.AccountState memory st)
    {
        AccountSlot memory a = s.accounts[accountId];
        st.collateral = collateralIn(s, ctx, accountId, a.marginMask);
        st.settlement = a.settlement;

        uint256 mm;
        uint256 im;
        uint256 markets = a.positionMask;
        for (uint256 id; markets != 0; ++id) {
            if (markets & 1 != 0) {
                (int256 pnl, uint256 notional, uint256 req, uint256 initReq) = positionTerms(s, ctx, accountId, id, withIM);
                st.unrealisedPnl += pnl;
                st.notional += notional;
                mm += req;
                im += initReq;
            }
            markets >>= 1;
        }
        if (a.positionMask != 0) {
            // The liquidation keeper reward is reserved in both requirements so liquidating always pays.
            uint256 reward = s.hot.keeperReward;
            mm += reward;
            if (withIM) im += reward;
        }
        st.maintenanceMargin = mm;
        st.initialMargin = im;
        setHealth(st);
    }

    /// @dev C over the listed assets whose bits are set in `indexMask`: Σ margin × price × haircut, rounded down at
    ///      both steps (price, then haircut), per asset. A valuation sums the account's margin mask; a rebalance
    ///      that moves only balances re-sums just the assets it moved (the terms are per asset, so the two agree
    ///      to the wei). An asset without margin adds nothing.
    function collateralIn(Storage storage s, Ctx memory ctx, uint256 accountId, uint256 indexMask)
        internal
        view
        returns (uint256 c)
    {
        for (uint256 i; indexMask != 0; ++i) {
            if (indexMask & 1 != 0) {
                Asset memory asset = s.assetList[i];
                (, uint256 px) = lookup(ctx, asset.token); // 0 when unpriced: counts as nothing
                uint256 value = WadMath.toValueDown(s.balances[accountId][asset.token].margin, px, asset.decimals);
                c += value.wMulDown(asset.haircut);
            }
            indexMask >>= 1;
        }
    }

    /// @dev E = C + S + U and health = E / MM (rounded down; unbounded when MM = 0, 0 when E <= 0) from the
    ///      state's other fields.
    function setHealth(IMarginEngine.AccountState memory st) internal pure {
        st.equity = int256(st.collateral) + st.settlement + st.unrealisedPnl;
        uint256 mm = st.maintenanceMargin;
        if (mm == 0) st.health = type(uint256).max;
        else if (st.equity <= 0) st.health = 0;
        else st.health = uint256(st.equity).wDivDown(mm); // health rounds down
    }

    /// @dev One position's PnL, notional and requirements (the initial one only `withIM`, else 0). Notional and
    ///      requirements round up.
    function positionTerms(Storage storage s, Ctx memory ctx, uint256 accountId, uint256 marketId, bool withIM)
        internal
        view
        returns (int256 pnl, uint256 notional, uint256 req, uint256 initReq)
    {
        MarketSlot storage m = s.markets[marketId];
        {
            PositionSlot storage p = s.positions[accountId][marketId];
            uint256 px = cachedPrice(ctx, m.asset);
            pnl = positionPnl(p, px, fundingIndexNow(s, marketId, px));
            notional = WadMath.abs(p.size).mulDivUp(px, WAD);
        }
        // MM applies the maintenance volatility (bounded speed); IM, the gate of new risk, follows σ at once, never
        // uses less than MM does (so IM >= MM always) nor less than the market's stress volatility imVolFloor.
        (uint256 target, uint256 maint) = m.volK == 0 ? (0, 0) : cachedVol(ctx, m.asset);
        req = notional.wMulUp(mmr(s, m, notional, maint));
        if (withIM) initReq = _initialRequirement(s, m, notional, target, maint, req);
    }

    /// @dev N·mmr(max(σ_target, imVolFloor))·imFactor, or req·imFactor when that σ is not above the maintenance one
    ///      (`req` = N·mmr(σ_mm)), rounded up. Its own frame: the legacy pipeline of `npm run coverage` runs out of
    ///      stack with it inline.
    function _initialRequirement(
        Storage storage s,
        MarketSlot storage m,
        uint256 notional,
        uint256 target,
        uint256 maint,
        uint256 req
    ) private view returns (uint256) {
        uint256 floor = nano(m.imVolFloor);
        if (target < floor) target = floor;
        return (target > maint ? notional.wMulUp(mmr(s, m, notional, target)) : req).wMulUp(nano(m.imFactor));
    }

    /// @dev The least initial margin the account can be asked for once an order leaves |size| `size` in `marketId`:
    ///      Σ N·mmr(σ = imVolFloor)·imFactor over its positions (`marketId` at `size`, the others as they are) +
    ///      keeperReward, at cached prices, rounded up. IM never uses a σ below the market's floor (`positionTerms`)
    ///      and mmr grows with σ, so the fill's IM at these prices is at least this. Every price must be cached.
    function floorInitialMargin(Storage storage s, Ctx memory ctx, uint256 accountId, uint256 marketId, uint256 size)
        internal
        view
        returns (uint256 im)
    {
        uint256 markets = s.accounts[accountId].positionMask | (1 << marketId);
        for (uint256 id; markets != 0; ++id) {
            if (markets & 1 != 0) {
                MarketSlot storage m = s.markets[id];
                uint256 held = id == marketId ? size : WadMath.abs(s.positions[accountId][id].size);
                uint256 notional = held.mulDivUp(cachedPrice(ctx, m.asset), WAD);
                im += notional.wMulUp(mmr(s, m, notional, nano(m.imVolFloor))).wMulUp(nano(m.imFactor));
            }
            markets >>= 1;
        }
        im += s.hot.keeperReward;
    }

    /// @dev Σ N·mmr(max(σ, σ_mm)) + keeperReward, rounded up: the maintenance margin at the current volatility.
    ///      A liquidation is triggered at the maintenance volatility (bounded speed) but restores its target
    ///      against this, so what it leaves open is sized for the volatility of now, as new risk is.
    function currentVolMaintenance(Storage storage s, Ctx memory ctx, uint256 accountId)
        internal
        view
        returns (uint256 mm)
    {
        uint256 markets = s.accounts[accountId].positionMask;
        for (uint256 id; markets != 0; ++id) {
            if (markets & 1 != 0) {
                MarketSlot storage m = s.markets[id];
                uint256 notional = WadMath.abs(s.positions[accountId][id].size).mulDivUp(cachedPrice(ctx, m.asset), WAD);
                (uint256 target, uint256 maint) = m.volK == 0 ? (0, 0) : cachedVol(ctx, m.asset);
                mm += notional.wMulUp(mmr(s, m, notional, target > maint ? target : maint));
            }
            markets >>= 1;
        }
        if (s.accounts[accountId].positionMask != 0) mm += s.hot.keeperReward;
    }

    /// @dev Σ feeRate_m × N_m over the account's positions, rounded up: the trading fee of closing all of
    ///      it (the φ·N of the rebalance reduce formula).
    function closeFeeUsd(Storage storage s, Ctx memory ctx, uint256 accountId) internal view returns (uint256 fee) {
        uint256 markets = s.accounts[accountId].positionMask;
        for (uint256 id; markets != 0; ++id) {
            if (markets & 1 != 0) {
                MarketSlot storage m = s.markets[id];
                uint256 notional = WadMath.abs(s.positions[accountId][id].size).mulDivUp(cachedPrice(ctx, m.asset), WAD);
                fee += notional.wMulUp(nano(m.feeRate));
            }
            markets >>= 1;
        }
    }

    /// @dev size·(P − entry) − size·(F − F_entry) = size·(P − F) − size·entryNet (exact integers), rounded down once
    ///      (against the account).
    function positionPnl(PositionSlot storage p, uint256 px, int256 index) internal view returns (int256) {
        int256 size = p.size;
        return WadMath.mulDivFloor(size * (int256(px) - index) - size * p.entryNet, 1, WAD);
    }

    /// @dev mmr = min(maxMMR, baseMMR + volK·σ·sqrt(horizon) + sizeK·N/oiCapUsd), each term rounded up.
    ///      oiCapUsd is a governance figure (> 0), never live pool capital: no LP action moves a requirement.
    function mmr(Storage storage s, MarketSlot storage m, uint256 notional, uint256 vol)
        internal
        view
        returns (uint256)
    {
        uint256 rate = nano(m.baseMMR);
        if (m.volK != 0) rate += nano(m.volK).wMulUp(vol).wMulUp(s.hot.sqrtHorizon);
        if (m.sizeK != 0) rate += nano(m.sizeK).mulDivUp(notional, m.oiCapUsd);
        uint256 cap = nano(m.maxMMR);
        return rate > cap ? cap : rate;
    }

    // =================================================================== rescue below 1

    /// @dev Whether the account's own reserve, under its policy, can lift it to the liquidation target now: the
    ///      rule that gives a rescue priority over a liquidation (README, "Rescue below 1"). True when the account's
    ///      policy allows TOP_UP, pays its keeper at least the liquidation's flat
    ///      reward (`maxFeeUsd >= keeperReward`, so a rescue is always worth a keeper's call), is past its
    ///      cooldown, and E − maxFeeUsd − one settlement unit + Σ reserve × price × haircut (policy assets with a
    ///      valid price, rounded down) >= liquidationTargetRatio × `currentVolMaintenance` (rounded up): what the
    ///      liquidation it pre-empts would restore. Reserve prices come through the view door, which
    ///      agrees with `poke` (an invalid one counts as zero: that only makes the liquidation possible).
    function canRescue(Storage storage s, Ctx memory ctx, uint256 accountId, IMarginEngine.AccountState memory st)
        internal
        view
        returns (bool)
    {
        Policy memory p = policyOf(s, accountId);
        if (
            p.actions & TOP_UP == 0 || p.maxFeeUsd < s.hot.keeperReward || block.timestamp < rebalanceReadyAt(s, accountId)
        ) return false;
        // As the liquidation it pre-empts would: the target against the maintenance margin at the current
        // volatility, and one settlement unit to spare (the settle after the fee rounds against the account).
        int256 lifted = st.equity - int256(uint256(p.maxFeeUsd)) - int256(ctx.env.settlementScale);
        int256 needed = int256(currentVolMaintenance(s, ctx, accountId).wMulUp(s.risk.liquidationTargetRatio));
        for (uint256 k; k < p.assetCount && lifted < needed; ++k) {
            Asset memory asset = s.assetList[policyAssetIndex(p, k)];
            uint256 reserve = s.balances[accountId][asset.token].reserve;
            if (reserve == 0) continue;
            uint256 px = viewCollateral(ctx, asset.token);
            lifted += int256(WadMath.toValueDown(reserve, px, asset.decimals).wMulDown(asset.haircut));
        }
        return lifted >= needed;
    }

    /// @dev Listing index of the policy's k-th top-up asset (k < assetCount).
    function policyAssetIndex(Policy memory p, uint256 k) internal pure returns (uint256) {
        return packedIndex(p.assetIndices, k);
    }

    /// @dev The k-th 4-bit listing index of a packed list (a policy's top-up assets, a plan's assets): bits [4k, 4k + 4).
    function packedIndex(uint256 packed, uint256 k) internal pure returns (uint256) {
        return (packed >> (4 * k)) & 0xF;
    }

    /// @dev A stored fraction back in WAD: `v` < 2^40 (MarketSlot), so v × 1e9 < 2^70 cannot overflow.
    function nano(uint256 v) internal pure returns (uint256) {
        unchecked {
            return v * NANO;
        }
    }

    /// @dev A market's parameters as the ABI struct (`marketParams`), the fractions back in WAD (exact).
    function marketParamsOf(MarketSlot storage m) internal view returns (IMarginEngine.MarketParams memory p) {
        p.asset = m.asset;
        p.baseMMR = uint64(nano(m.baseMMR)); // each <= 1e19 < 2^64 (MarketSlot's bounds)
        p.volK = uint64(nano(m.volK));
        p.sizeK = uint64(nano(m.sizeK));
        p.maxMMR = uint64(nano(m.maxMMR));
        p.imFactor = uint64(nano(m.imFactor));
        p.feeRate = uint64(nano(m.feeRate));
        p.oiCapFraction = uint64(nano(m.oiCapFraction));
        p.maxFundingRate = uint64(nano(m.maxFundingRate));
        p.imVolFloor = uint64(nano(m.imVolFloor));
        p.skewScale = m.skewScale;
        p.oiCapUsd = m.oiCapUsd;
    }

    /// @dev The stored policy with its ratios back in WAD (exact: they were stored as whole millionths).
    function policyOf(Storage storage s, uint256 accountId) internal view returns (Policy memory p) {
        PolicySlot memory q = s.policies[accountId];
        p.actions = q.actions;
        p.cooldown = q.cooldown;
        p.triggerRatio = uint64(q.triggerPpm) * uint64(POLICY_RATIO_UNIT); // <= 16.78e18 < 2^64
        p.targetRatio = uint64(q.targetPpm) * uint64(POLICY_RATIO_UNIT);
        p.releaseRatio = uint64(q.releasePpm) * uint64(POLICY_RATIO_UNIT);
        p.maxFeeUsd = q.maxFeeUsd;
        p.assetIndices = q.assetIndices;
        p.assetCount = q.assetCount;
        p.ownerActedAt = q.ownerActedAt;
    }

    /// @dev The policy's top-up asset count and packed listing indices, without decoding the rest.
    function policyAssets(Storage storage s, uint256 accountId) internal view returns (uint256 count, uint256 indices) {
        PolicySlot storage q = s.policies[accountId];
        return (q.assetCount, q.assetIndices);
    }

    /// @dev The policy as the ABI struct: the top-up assets back as token addresses, in the owner's order.
    function loadPolicy(Storage storage s, uint256 accountId)
        internal
        view
        returns (IMarginEngine.RebalancePolicy memory policy)
    {
        Policy memory p = policyOf(s, accountId);
        policy.actions = p.actions;
        policy.cooldown = p.cooldown;
        policy.triggerRatio = p.triggerRatio;
        policy.targetRatio = p.targetRatio;
        policy.releaseRatio = p.releaseRatio;
        policy.maxFeeUsd = p.maxFeeUsd;
        policy.topUpAssets = new address[](p.assetCount);
        for (uint256 k; k < p.assetCount; ++k) {
            policy.topUpAssets[k] = s.assetList[policyAssetIndex(p, k)].token;
        }
    }

    /// @dev When the account may next be rebalanced: `cooldown` after the last rebalance, and never twice in
    ///      one block (a keeper racing another for the same account finds out before any valuation).
    function rebalanceReadyAt(Storage storage s, uint256 accountId) internal view returns (uint256) {
        uint256 last = s.accounts[accountId].lastRebalanceAt;
        if (last == 0) return 0;
        uint256 cooldown = s.policies[accountId].cooldown;
        return last + (cooldown == 0 ? 1 : cooldown);
    }

    // =================================================================== prices

    /// @dev Pokes every oracle the account's valuation needs: its market assets first, with their volatilities
    ///      (`pokeMarket`; reverting `OracleUnhealthy(asset)` on the first invalid one: a position cannot be valued
    ///      without its price), then its margin assets (an invalid one is cached as 0: that collateral counts as nothing).
    ///      Cached, so each asset is poked once per call. Same walk as `viewAccountPrices`: Solidity cannot share
    ///      one loop between a view and a state-changing door without building an asset list in memory, which
    ///      costs ~1k gas per call on the hot path.
    function pokeAccount(Storage storage s, Ctx memory ctx, uint256 accountId) internal {
        address unpriced = pokeAccountPrices(s, ctx, accountId, true);
        if (unpriced != address(0)) revert IMarginEngine.OracleUnhealthy(unpriced);
    }

    /// @dev `pokeAccount` that reports instead of reverting: the first market asset without a valid price
    ///      (address(0) when every position is priced; the walk stops there). A batch skips such an account.
    ///      `withVols`: the call values the account, so its markets' volatilities come with their prices (`pokeMarket`);
    ///      without it (a bare poke), the markets are poked as the collateral is.
    function pokeAccountPrices(Storage storage s, Ctx memory ctx, uint256 accountId, bool withVols)
        internal
        returns (address)
    {
        uint256 markets = s.accounts[accountId].positionMask;
        for (uint256 id; markets != 0; ++id) {
            if (markets & 1 != 0) {
                address asset = s.markets[id].asset;
                uint256 px = withVols ? pokeMarket(ctx, asset) : pokeCollateral(ctx, asset);
                if (px == 0) return asset;
            }
            markets >>= 1;
        }
        uint256 held = s.accounts[accountId].marginMask;
        for (uint256 i; held != 0; ++i) {
            if (held & 1 != 0) pokeCollateral(ctx, s.assetList[i].token);
            held >>= 1;
        }
        return address(0);
    }

    /// @dev The view door of `pokeAccount`: reads `oracle.tryPrice`. Returns the first market asset without a
    ///      valid price (address(0) when every position is priced); callers that value the account revert
    ///      `OracleUnhealthy(unpriced)`, `healthBatch` reports the account as unpriced.
    function viewAccountPrices(Storage storage s, Ctx memory ctx, uint256 accountId)
        internal
        view
        returns (address unpriced)
    {
        uint256 markets = s.accounts[accountId].positionMask;
        for (uint256 id; markets != 0; ++id) {
            if (markets & 1 != 0) {
                address asset = s.markets[id].asset;
                if (viewCollateral(ctx, asset) == 0) return asset;
            }
            markets >>= 1;
        }
        uint256 held = s.accounts[accountId].marginMask;
        for (uint256 i; held != 0; ++i) {
            if (held & 1 != 0) viewCollateral(ctx, s.assetList[i].token);
            held >>= 1;
        }
    }

    /// @dev `viewAccountPrices`, reverting `OracleUnhealthy(asset)` when a position cannot be priced.
    function requireAccountPrices(Storage storage s, Ctx memory ctx, uint256 accountId) internal view {
        address unpriced = viewAccountPrices(s, ctx, accountId);
        if (unpriced != address(0)) revert IMarginEngine.OracleUnhealthy(unpriced);
    }

    /// @dev A price the call cannot do without (a position's market, a trade): reverts `OracleUnhealthy`. `market`: the
    ///      call will value a position in this market asset, so its volatilities come with the price (`pokeMarket`).
    function pokePrice(Ctx memory ctx, address asset, bool market) internal returns (uint256 px) {
        px = market ? pokeMarket(ctx, asset) : pokeCollateral(ctx, asset);
        if (px == 0) revert IMarginEngine.OracleUnhealthy(asset);
    }

    /// @dev A market asset's price, as `pokeCollateral`, and its volatilities from the same router call
    ///      (`oracle.pokeMarket`: `volatilities(asset)` as it reads right after the poke), cached for `cachedVol`.
    ///      An invalid price caches 0 for all three, i.e. volatilities not loaded (never read: `cachedPrice` reverts
    ///      first). An asset the call already cached (as collateral, by an earlier account of a batch) keeps its
    ///      entry: `cachedVol` reads its volatilities from the router if a valuation needs them.
    function pokeMarket(Ctx memory ctx, address asset) internal returns (uint256 px) {
        (bool found, uint256 cached) = lookup(ctx, asset);
        if (found) return cached;
        uint256 target;
        uint256 maint;
        (, px, target, maint) = ctx.env.oracle.pokeMarket(asset); // all 0 when not ok
        uint256 i = ctx.pxCount;
        store(ctx, asset, px);
        ctx.volTarget[i] = target;
        ctx.volMaint[i] = maint;
    }

    /// @dev A collateral price: 0 (cached as such) when the oracle is invalid.
    function pokeCollateral(Ctx memory ctx, address asset) internal returns (uint256 px) {
        (bool found, uint256 cached) = lookup(ctx, asset);
        if (found) return cached;
        (, px) = ctx.env.oracle.poke(asset); // 0 when not ok
        store(ctx, asset, px);
    }

    /// @dev The view door of `pokeCollateral`.
    function viewCollateral(Ctx memory ctx, address asset) internal view returns (uint256 px) {
        (bool found, uint256 cached) = lookup(ctx, asset);
        if (found) return cached;
        (, px) = ctx.env.oracle.tryPrice(asset); // 0 when not ok
        store(ctx, asset, px);
    }

    /// @dev A loaded price the caller cannot do without: reverts `OracleUnhealthy` when missing or invalid.
    function cachedPrice(Ctx memory ctx, address asset) internal pure returns (uint256) {
        (, uint256 px) = lookup(ctx, asset);
        if (px == 0) revert IMarginEngine.OracleUnhealthy(asset);
        return px;
    }

    function lookup(Ctx memory ctx, address asset) internal pure returns (bool, uint256) {
        if (asset == ctx.env.settlementAsset) return (true, WAD);
        for (uint256 i; i < ctx.pxCount; ++i) {
            if (ctx.pxAsset[i] == asset) return (true, ctx.pxValue[i]);
        }
        return (false, 0);
    }

    /// @dev Target and maintenance volatility of a market asset whose price is cached, read once per call: loaded with
    ///      the price by `pokeMarket`, else read here from `oracle.volatilities` (the view door, or an asset first
    ///      cached as collateral). Both agree to the wei: a poked price fixes the observation for the transaction.
    function cachedVol(Ctx memory ctx, address asset) internal view returns (uint256 target, uint256 maint) {
        for (uint256 i; i < ctx.pxCount; ++i) {
            if (ctx.pxAsset[i] == asset) {
                target = ctx.volTarget[i];
                if (target == 0) {
                    (target, maint) = ctx.env.oracle.volatilities(asset);
                    ctx.volTarget[i] = target;
                    ctx.volMaint[i] = maint;
                } else {
                    maint = ctx.volMaint[i];
                }
                return (target, maint);
            }
        }
        return ctx.env.oracle.volatilities(asset);
    }

    /// @dev Replaces the cached price of `asset` (already loaded) with `px`.
    function reprice(Ctx memory ctx, address asset, uint256 px) internal pure {
        for (uint256 i; i < ctx.pxCount; ++i) {
            if (ctx.pxAsset[i] == asset) {
                ctx.pxValue[i] = px;
                return;
            }
        }
    }

    function store(Ctx memory ctx, address asset, uint256 px) internal pure {
        ctx.pxAsset[ctx.pxCount] = asset;
        ctx.pxValue[ctx.pxCount] = px;
        ++ctx.pxCount;
    }

    // =================================================================== positions and funding

    /// @dev Applies a size change at `px`: accrues funding, realises the whole position's PnL into the
    ///      settlement balance and re-enters the rest at `px` (value-equivalent to realising only the
    ///      closed part), updates open interest and the exact per-side aggregates the pool values itself with.
    function applyTrade(Storage storage s, uint256 accountId, uint256 marketId, int256 sizeDelta, uint256 px, uint256 fee)
        internal
    {
        int256 index = accrueFunding(s, marketId, px);
        PositionSlot storage p = s.positions[accountId][marketId];
        IMarginEngine.MarketState storage st = s.marketStates[marketId];
        int256 oldSize = p.size;
        int256 realised;
        if (oldSize != 0) {
            realised = positionPnl(p, px, index);
            _leaveSide(st, oldSize, p.entryNet);
        }
        int256 newSize = oldSize + sizeDelta;
        if (newSize != 0) {
            int256 net = int256(px) - index;
            p.size = newSize.toInt128();
            p.entryNet = net.toInt128();
            p.entryPrice = px.toUint128();
            _joinSide(st, newSize, net);
            s.accounts[accountId].positionMask |= uint32(1 << marketId); // marketId < MAX_MARKETS
        } else {
            // Closed: the size is 0 and the mask bit clear; the entry fields stay as they were (read nowhere while the
            // size is 0: PnL = size·(…) = 0, `position()` shows zeros), so both slots stay nonzero and the next open in
            // this market writes them for 2,900 gas each instead of 20,000 (README "Storage layout"). A close forgoes
            // the two 4,800-gas refunds a delete got, and does not write the entry price slot at all.
            p.size = 0;
            s.accounts[accountId].positionMask &= ~uint32(1 << marketId);
        }
        refreshFundingRate(s, marketId); // the open interests changed (funding was accrued above)
        if (realised != 0) changeSettlement(s, accountId, realised);
        emit IMarginEngine.PositionModified(accountId, marketId, sizeDelta, newSize, px, realised, fee);
    }

    /// @dev Takes a position of `size` (entered at `net` = entryPrice − entryFunding) out of its side's aggregates.
    function _leaveSide(IMarginEngine.MarketState storage st, int256 size, int256 net) private {
        if (size > 0) {
            st.longOI -= uint128(uint256(size)); // |size| < 2^127 and <= the side's OI
            st.longEntryNetSum -= size * net;
        } else {
            st.shortOI -= uint128(uint256(-size));
            st.shortEntryNetSum -= size * net;
        }
    }

    /// @dev Adds a position of `size` entered at `net` to its side's aggregates.
    function _joinSide(IMarginEngine.MarketState storage st, int256 size, int256 net) private {
        if (size > 0) {
            st.longOI += uint128(uint256(size)); // checked: the side's OI fits 128 bits
            st.longEntryNetSum += size * net;
        } else {
            st.shortOI += uint128(uint256(-size));
            st.shortEntryNetSum += size * net;
        }
    }

    /// @dev Closes `fraction` (WAD) of every position of the account at cached prices, charging each
    ///      market's trading fee when `chargeFee`. The closed size rounds away from zero (more is closed, the
    ///      account's risk falls at least by `fraction`); fraction <= 1 keeps it within the position. Fees
    ///      round up. Returns the closed notional (rounded up) and the fees charged.
    function closeFraction(Storage storage s, Ctx memory ctx, uint256 accountId, uint256 fraction, bool chargeFee)
        internal
        returns (uint256 closedNotional, uint256 fees)
    {
        uint256 mask = s.accounts[accountId].positionMask;
        for (uint256 id; mask != 0; ++id) {
            if (mask & 1 != 0) {
                (uint256 notional, uint256 fee) = _closeOne(s, ctx, accountId, id, fraction, chargeFee);
                closedNotional += notional;
                fees += fee;
            }
            mask >>= 1;
        }
        if (fees != 0) changeSettlement(s, accountId, -fees.toInt256());
    }

    function _closeOne(
        Storage storage s,
        Ctx memory ctx,
        uint256 accountId,
        uint256 marketId,
        uint256 fraction,
        bool chargeFee
    ) private returns (uint256 notional, uint256 fee) {
        int256 size = s.positions[accountId][marketId].size;
        int256 closeSize = size > 0 ? WadMath.mulDivCeil(size, fraction, WAD) : WadMath.mulDivFloor(size, fraction, WAD);
        MarketSlot storage m = s.markets[marketId];
        uint256 px = cachedPrice(ctx, m.asset);
        notional = WadMath.abs(closeSize).mulDivUp(px, WAD);
        if (chargeFee) fee = notional.wMulUp(nano(m.feeRate));
        applyTrade(s, accountId, marketId, -closeSize, px, fee);
    }

    /// @dev Brings the market's funding index to now at `px` and returns it.
    function accrueFunding(Storage storage s, uint256 marketId, uint256 px) internal returns (int256 index) {
        IMarginEngine.MarketState storage st = s.marketStates[marketId];
        index = fundingIndexNow(s, marketId, px);
        if (st.lastFundingTime != block.timestamp) {
            st.fundingIndex = index.toInt128();
            st.lastFundingTime = uint64(block.timestamp);
            emit IMarginEngine.FundingAccrued(marketId, index, st.fundingRate);
        }
    }

    /// @dev Funding index as if accrued now: F + rate/day × P × dt / 1 day (rounded toward zero), at the stored rate
    ///      (the rate of the whole interval: it changes only where funding is accrued first). One slot.
    function fundingIndexNow(Storage storage s, uint256 marketId, uint256 px) internal view returns (int256) {
        IMarginEngine.MarketState storage st = s.marketStates[marketId];
        uint256 dt = block.timestamp - st.lastFundingTime;
        if (dt == 0) return st.fundingIndex;
        int256 rate = st.fundingRate;
        return st.fundingIndex + (rate * int256(px) / IWAD) * int256(dt) / int256(1 days);
    }

    /// @dev Stores the market's funding rate for its open interests and parameters as they are now. Called after
    ///      every change of either (a trade's `applyTrade`, `setMarketParams`), each of which accrued funding first.
    function refreshFundingRate(Storage storage s, uint256 marketId) internal {
        IMarginEngine.MarketState storage st = s.marketStates[marketId];
        // |rate| <= maxFundingRate <= MAX_FUNDING_RATE = 0.1e18 < 2^63 (the clamp below)
        st.fundingRate = int64(fundingRate(s.markets[marketId], st));
    }

    /// @dev Daily funding rate ∝ skew, capped: clamp((long − short) / skewScale × maxRate, ±maxRate).
    ///      Positive: longs pay.
    function fundingRate(MarketSlot storage m, IMarginEngine.MarketState storage st)
        internal
        view
        returns (int256 rate)
    {
        int256 skew = int256(uint256(st.longOI)) - int256(uint256(st.shortOI));
        int256 maxRate = int256(nano(m.maxFundingRate));
        rate = skew * maxRate / int256(uint256(m.skewScale));
        if (rate > maxRate) rate = maxRate;
        if (rate < -maxRate) rate = -maxRate;
    }

    // =================================================================== settlement

    /// @dev An account with debt, no position and no margin left: nothing can ever pay its debt, so it is bad
    ///      debt and is written off at once, the insurance fund first (the pool never received this value, so
    ///      LPs already carry it; insurance makes them whole as far as it can). Called after every settlement
    ///      that can leave an account empty: a trade, a liquidation, a collateral sale, `settle`.
    function writeOffIfEmpty(Storage storage s, Env memory env, uint256 accountId) internal {
        AccountSlot memory a = s.accounts[accountId];
        int256 v = a.settlement;
        if (v >= 0 || a.positionMask != 0 || a.marginMask != 0) return;
        uint256 amountUsd = uint256(-v);
        s.accounts[accountId].settlement = 0;
        emit IMarginEngine.SettlementChanged(accountId, -v, 0);
        // Token units rounded up: the insurance fund covers the whole debt if it can. The fund's tokens stay in the
        // pool's balance: they become LP capital, replacing what the debtor never paid.
        uint256 amount = amountUsd.mulDivUp(1, env.settlementScale);
        uint256 insurance = s.insurance;
        uint256 fromInsurance = Math.min(amount, insurance);
        s.insurance = insurance - fromInsurance;
        s.pool.setAside -= uint128(fromInsurance); // insurance <= setAside
        emit IPoolEngine.BadDebtCovered(accountId, amount, fromInsurance, amount - fromInsurance);
        emit IMarginEngine.BadDebt(accountId, amountUsd, fromInsurance);
    }

    function changeSettlement(Storage storage s, uint256 accountId, int256 delta) internal {
        int256 v = s.accounts[accountId].settlement + delta;
        s.accounts[accountId].settlement = v.toInt128();
        emit IMarginEngine.SettlementChanged(accountId, delta, v);
    }

    /// @dev Credits `keeper` `amountUsd` in settlement-token units, rounded down (the sub-unit rest stays with the
    ///      protocol), claimable with `claimKeeperRewards`: no token moves on the hot path. The caller has charged
    ///      the account (its settlement balance); the `settle` that follows pays the pool, which holds the tokens
    ///      for the keeper (they are not LP capital).
    function creditKeeper(Storage storage s, Env memory env, address keeper, uint256 amountUsd) internal {
        uint256 amount = amountUsd / env.settlementScale;
        if (amount != 0) creditKeeperUnits(s, env.settlementAsset, keeper, amount);
    }

    /// @dev Credits `keeper` `amount` settlement-token units held by the pool apart from LP capital (set aside).
    function creditKeeperUnits(Storage storage s, address settlementAsset, address keeper, uint256 amount) internal {
        uint256 balance = s.keeperRewards[keeper] + amount;
        s.keeperRewards[keeper] = balance;
        s.pool.setAside = fit(0, settlementAsset, s.pool.setAside + amount);
        emit IMarginEngine.KeeperRewardCredited(keeper, amount, balance);
    }

    /// @dev Keeps `totalDebtUsd` = Σ max(0, −settlement) after a call changed one account's settlement balance from
    ///      `before`: one comparison, a store only when the debt changed.
    function trackDebt(Storage storage s, uint256 accountId, int256 before) internal {
        int256 current = s.accounts[accountId].settlement;
        if (current == before) return;
        uint256 debtBefore = before < 0 ? uint256(-before) : 0;
        uint256 debtNow = current < 0 ? uint256(-current) : 0;
        if (debtNow != debtBefore) s.totalDebtUsd = s.totalDebtUsd + debtNow - debtBefore;
    }

    /// @dev Moves value between the account's USDC margin and the pool until the settlement balance is as
    ///      close to zero as tokens allow: a positive S is paid by the pool into margin (rounded down, the
    ///      sub-unit rest stays as a claim); a negative S is paid from USDC margin to the pool (rounded up;
    ///      the overshoot of less than one token unit is kept by the protocol). Both sides are held here: no token
    ///      moves, two balances change.
    function settle(Storage storage s, Env memory env, uint256 accountId) internal {
        int256 v = s.accounts[accountId].settlement;
        if (v > 0) {
            uint256 amount = Math.min(uint256(v) / env.settlementScale, poolCapital(s));
            if (amount == 0) return;
            changeSettlement(s, accountId, -(amount * env.settlementScale).toInt256());
            s.pool.balance -= uint128(amount); // amount <= capital <= balance
            addMargin(s, accountId, env.settlementAsset, SETTLEMENT_INDEX, amount);
            emit IVault.MarginCredited(accountId, env.settlementAsset, amount);
        } else if (v < 0) {
            uint256 owed = uint256(-v).mulDivUp(1, env.settlementScale);
            uint256 amount = Math.min(owed, s.balances[accountId][env.settlementAsset].margin);
            if (amount == 0) return;
            int256 delta = amount == owed ? -v : (amount * env.settlementScale).toInt256();
            changeSettlement(s, accountId, delta);
            takeMargin(s, accountId, env.settlementAsset, SETTLEMENT_INDEX, amount);
            s.pool.balance += uint128(amount); // checked: the pool's balance fits 128 bits
            emit IVault.MarginDebited(accountId, env.settlementAsset, env.pool, amount);
        }
    }

    // =================================================================== custody

    /// @dev LP capital: the pool's tokens less insurance and unclaimed keeper rewards (saturating: if unpaid
    ///      account debts left less than that, LP capital is 0 and a claim waits for the debts to be paid).
    function poolCapital(Storage storage s) internal view returns (uint256) {
        PoolSlot memory pool = s.pool;
        return pool.balance > pool.setAside ? pool.balance - pool.setAside : 0;
    }

    /// @dev A listed asset's slot; reverts `AssetNotListed`.
    function listedAsset(Storage storage s, address token) internal view returns (Asset memory) {
        uint256 slot = s.assetSlot[token];
        if (slot == 0) revert IVault.AssetNotListed(token);
        return s.assetList[slot - 1];
    }

    /// @dev Records an owner's action that can call for a REDUCE (README "Orders"): only on an account whose policy
    ///      may REDUCE, whose rebalance then waits for a round of every held market published after now.
    function markOwnerAction(Storage storage s, uint256 accountId) internal {
        PolicySlot storage p = s.policies[accountId];
        if (p.actions & REDUCE != 0) p.ownerActedAt = uint40(block.timestamp);
    }

    /// @dev Whether every market the account holds has a round published after `since` (the oracle's observation,
    ///      poked in this call): a REDUCE then closes at a price the owner could not know when he last acted.
    function roundsAfter(Storage storage s, Ctx memory ctx, uint256 accountId, uint256 since) internal view returns (bool) {
        uint256 markets = s.accounts[accountId].positionMask;
        for (uint256 id; markets != 0; ++id) {
            if (markets & 1 != 0 && ctx.env.oracle.observedAt(s.markets[id].asset) <= since) return false;
            markets >>= 1;
        }
        return true;
    }

    /// @dev The id of a pending order of the account that may add risk (not reduce-only), or 0.
    function pendingRiskOrder(Storage storage s, uint256 accountId) internal view returns (uint256) {
        PendingList storage list = s.pendingOrders[accountId];
        uint256 head = list.head;
        uint256 n = pendingCount(head);
        for (uint256 i; i < n; ++i) {
            if (!s.orderCells[accountId][pendingCell(head, i)].reduceOnly) return pendingAt(list, head, i);
        }
        return 0;
    }

    uint256 private constant ID_BITS = 56;
    uint256 private constant ID_MASK = (1 << ID_BITS) - 1;
    uint256 private constant CELL_SHIFT = 232;

    /// @dev Number of pending orders in a list whose `head` word is `head`.
    function pendingCount(uint256 head) internal pure returns (uint256) {
        return head & 0xff;
    }

    /// @dev The `i`-th pending id (i < count); `head` is `list.head` as read (the tail is read only for i >= 4).
    function pendingAt(PendingList storage list, uint256 head, uint256 i) internal view returns (uint256) {
        if (i < 4) return (head >> (8 + ID_BITS * i)) & ID_MASK;
        return (list.tail >> (ID_BITS * (i - 4))) & ID_MASK;
    }

    /// @dev The order cell of the `i`-th pending entry (i < count): `orderCells[accountId][cell]` holds its fields.
    function pendingCell(uint256 head, uint256 i) internal pure returns (uint256) {
        return (head >> (CELL_SHIFT + 3 * i)) & 7;
    }

    /// @dev Appends `id` (the caller has checked count < MAX_PENDING_ORDERS) and returns the order cell it takes: the
    ///      lowest no pending entry names. Reverts with SafeCast's named error for an id of 2^56 or more.
    function pushPending(PendingList storage list, uint256 id) internal returns (uint256 cell) {
        if (id > ID_MASK) revert SafeCast.SafeCastOverflowedUintDowncast(uint8(ID_BITS), id);
        uint256 head = list.head;
        uint256 n = pendingCount(head);
        uint256 used;
        for (uint256 i; i < n; ++i) used |= 1 << pendingCell(head, i);
        while (used & (1 << cell) != 0) ++cell; // n < 8 entries name at most 7 of the 8 cells
        if (n < 4) head = _withEntry(head, n, id);
        else list.tail = _withEntry(list.tail, n, id);
        list.head = _withCell(head, n, cell) + 1; // count + 1 in bits 0..7: n + 1 <= MAX_PENDING_ORDERS < 256
    }

    /// @dev Removes the `i`-th pending entry (i < count): the last entry (id and cell) takes its place, the count drops
    ///      by one.
    function removePending(PendingList storage list, uint256 i) internal {
        uint256 head = list.head;
        uint256 last = pendingCount(head) - 1; // i < count: count >= 1
        if (i != last) {
            uint256 moved = pendingAt(list, head, last);
            if (i < 4) head = _withEntry(head, i, moved);
            else list.tail = _withEntry(list.tail, i, moved);
            head = _withCell(head, i, pendingCell(head, last));
        }
        list.head = head - 1; // count − 1 (bits 0..7, count >= 1)
    }

    /// @dev `word` (head for i < 4, tail otherwise) with entry `i` set to `id` (< 2^56).
    function _withEntry(uint256 word, uint256 i, uint256 id) private pure returns (uint256) {
        uint256 shift = i < 4 ? 8 + ID_BITS * i : ID_BITS * (i - 4);
        return (word & ~(ID_MASK << shift)) | (id << shift);
    }

    /// @dev `head` with the cell of entry `i` set to `cell` (< 8).
    function _withCell(uint256 head, uint256 i, uint256 cell) private pure returns (uint256) {
        uint256 shift = CELL_SHIFT + 3 * i;
        return (head & ~(uint256(7) << shift)) | (cell << shift);
    }

    /// @dev Records `accountId` (< 2^32, checked at the request) as the account of order `id`: 32 bits of the slot of
    ///      ids `id & ~7` … `id | 7`, so a request writes a nonzero slot except once in eight ids.
    function setOrderAccount(Storage storage s, uint256 id, uint256 accountId) internal {
        uint256 shift = 32 * (id & 7);
        uint256 word = s.orderAccounts[id >> 3];
        s.orderAccounts[id >> 3] = (word & ~(uint256(type(uint32).max) << shift)) | (accountId << shift);
    }

    /// @dev A pending order, its account and its index in the account's pending list; `o.requestedAt` is 0 when the
    ///      id is not pending (never requested, or settled: its cell may since hold another order of the account).
    function pendingOrder(Storage storage s, uint256 id)
        internal
        view
        returns (OrderSlot memory o, uint256 accountId, uint256 i)
    {
        accountId = (s.orderAccounts[id >> 3] >> (32 * (id & 7))) & type(uint32).max;
        if (accountId == 0) return (o, 0, 0); // never requested
        PendingList storage list = s.pendingOrders[accountId];
        uint256 head = list.head;
        uint256 n = pendingCount(head);
        for (; i < n; ++i) {
            if (pendingAt(list, head, i) == id) return (s.orderCells[accountId][pendingCell(head, i)], accountId, i);
        }
        return (o, 0, 0); // settled
    }

    function isAuthorized(Storage storage s, uint256 accountId, address caller) internal view returns (bool) {
        address owner = s.owners[accountId];
        return owner != address(0) && (caller == owner || s.operators[accountId][caller]);
    }

    /// @dev Adds margin of the asset listed at `index`, setting its mask bit (set iff margin > 0; an empty credit
    ///      sets nothing).
    function addMargin(Storage storage s, uint256 accountId, address token, uint256 index, uint256 amount) internal {
        if (amount == 0) return;
        Balance storage b = s.balances[accountId][token];
        b.margin = fit(accountId, token, b.margin + amount);
        s.accounts[accountId].marginMask |= uint32(1 << index);
    }

    /// @dev Takes margin of the asset listed at `index` (`InsufficientMargin` past the balance), clearing its mask
    ///      bit when none is left.
    function takeMargin(Storage storage s, uint256 accountId, address token, uint256 index, uint256 amount) internal {
        Balance storage b = s.balances[accountId][token];
        uint256 available = b.margin;
        if (available < amount) revert IVault.InsufficientMargin(accountId, token, available, amount);
        unchecked {
            b.margin = uint128(available - amount);
        }
        if (available == amount) s.accounts[accountId].marginMask &= ~uint32(1 << index);
    }

    /// @dev Reserve → margin (`toMargin`) or margin → reserve, in one read and one write of the shared slot; the
    ///      mask bit follows. `index` is the asset's listing index.
    function moveBalance(Storage storage s, uint256 accountId, address token, uint256 index, uint256 amount, bool toMargin)
        internal
    {
        Balance memory b = s.balances[accountId][token];
        (uint256 from, uint256 to) = toMargin ? (b.reserve, b.margin) : (b.margin, b.reserve);
        if (from < amount) {
            if (toMargin) revert IVault.InsufficientReserve(accountId, token, from, amount);
            revert IVault.InsufficientMargin(accountId, token, from, amount);
        }
        if (amount == 0) return;
        uint128 left = uint128(from - amount); // amount <= from, checked above
        uint128 grown = fit(accountId, token, to + amount);
        (b.reserve, b.margin) = toMargin ? (left, grown) : (grown, left);
        s.balances[accountId][token] = b;
        if (toMargin) s.accounts[accountId].marginMask |= uint32(1 << index);
        else if (left == 0) s.accounts[accountId].marginMask &= ~uint32(1 << index);
    }

    /// @dev Funds the insurance fund from LP capital (`InsufficientCapital` past it): the tokens stay in the pool's
    ///      balance, set apart.
    function addInsurance(Storage storage s, uint256 amount) internal {
        uint256 available = poolCapital(s);
        if (amount > available) revert ILiquidityPool.InsufficientCapital(available, amount);
        uint256 insurance = s.insurance + amount;
        s.insurance = insurance;
        s.pool.setAside += uint128(amount); // setAside + amount <= balance < 2^128 (amount <= capital)
        emit IPoolEngine.InsuranceAdded(amount, insurance);
    }

    /// @dev Pulls exactly `amount` of `token` from the caller into custody (`TransferAmountMismatch` for a token
    ///      that delivers less, e.g. fee-on-transfer) and tracks it.
    function pullTokens(Storage storage s, address token, uint256 amount) internal {
        uint256 before = IERC20(token).balanceOf(address(this));
        IERC20(token).safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = IERC20(token).balanceOf(address(this)) - before;
        if (received != amount) revert IVault.TransferAmountMismatch(token, amount, received);
        s.tracked[token] += amount;
    }

    /// @dev Sends `amount` of `token` out of custody; the caller has already taken it from a balance.
    function pushTokens(Storage storage s, address token, address to, uint256 amount) internal {
        s.tracked[token] -= amount;
        IERC20(token).safeTransfer(to, amount);
    }

    function fit(uint256 accountId, address token, uint256 value) internal pure returns (uint128) {
        if (value > type(uint128).max) revert IVault.BalanceTooLarge(accountId, token, value);
        return uint128(value);
    }
}
