// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {IMarginEngine} from "../../interfaces/IMarginEngine.sol";
import {IVault} from "../../interfaces/IVault.sol";
import {WadMath} from "../WadMath.sol";
import {MAX_ORDER_LIFETIME, MAX_PENDING_ORDERS} from "../Constants.sol";
import {AccountLogic} from "./AccountLogic.sol";

/// @title TradeLogic
/// @notice Two-step orders of the MarginEngine (run by delegatecall from it): the request, the fill, the settlement
///         of an order. See IMarginEngine.requestOrder / executeOrder and README "Orders".
library TradeLogic {
    using SafeCast for uint256;
    using WadMath for uint256;

    /// @notice What `fill` fills: `sizeDelta` on the account's position in `marketId` at `fillPx` (0: the current
    ///         price), no worse than `acceptablePrice`; `reduceOnly` as requested; `paused` the engine's pause (one
    ///         argument, so the legacy pipeline of `npm run coverage` has the stack for it).
    struct Fill {
        uint256 accountId;
        uint256 marketId;
        int256 sizeDelta;
        uint256 acceptablePrice;
        uint256 fillPx;
        bool reduceOnly;
        bool paused;
    }

    uint256 private constant WAD = 1e18;

    /// @notice A request's arguments (`IMarginEngine.requestOrder`) and the engine's pause flag, in memory: one stack
    ///         slot instead of seven (the coverage build compiles without the IR pipeline's stack handling).
    struct Request {
        uint256 accountId;
        uint256 marketId;
        int256 sizeDelta;
        uint256 acceptablePrice;
        uint256 deadline;
        bool reduceOnly;
        bool paused;
    }

    /// @dev See `IMarginEngine.requestOrder`; the engine has checked the caller and the market. Returns the order id
    ///      and, for an order that may add risk, the market's price as poked (0 for a reduce-only order).
    function requestOrder(AccountLogic.Storage storage s, AccountLogic.Env memory env, Request memory r)
        external
        returns (uint256 orderId, uint256 px)
    {
        _checkRequest(r.accountId, r.marketId, r.sizeDelta, r.deadline);
        // Paused: no new risk. A reduce-only order never adds any; another is judged against the position now (the
        // fill judges it again against the position then).
        if (r.paused && !r.reduceOnly && _increasesRisk(s.positions[r.accountId][r.marketId].size, r.sizeDelta)) {
            revert IMarginEngine.PositionIncreasePaused();
        }
        AccountLogic.PendingList storage pending = s.pendingOrders[r.accountId];
        if (AccountLogic.pendingCount(pending.head) >= MAX_PENDING_ORDERS) {
            revert IMarginEngine.TooManyPendingOrders(r.accountId, MAX_PENDING_ORDERS);
        }
        // One order that may add risk at a time: with two, whoever executes could fill the one whose round turned out
        // better and let the other fail its margin check (README "Orders"). The fill round is the feed's next after
        // its latest now: a round the trader could not have seen.
        address asset = s.markets[r.marketId].asset;
        uint80 afterRound;
        if (r.reduceOnly) afterRound = env.oracle.latestRound(asset);
        else (px, afterRound) = _reserveRisk(s, env, r.accountId, r.marketId, asset, r.sizeDelta);
        uint256 fee;
        (orderId, fee) = _escrowFee(s, env, r.accountId);
        _storeOrder(
            s,
            pending,
            orderId,
            AccountLogic.OrderSlot({
                accountId: uint32(r.accountId), // < 2^32, checked in _checkRequest
                marketId: uint8(r.marketId), // < MAX_MARKETS, checked by the engine
                reduceOnly: r.reduceOnly,
                requestedAt: uint32(block.timestamp), // block time fits 32 bits until the year 2106
                lifetime: uint24(r.deadline - block.timestamp), // in (0, MAX_ORDER_LIFETIME], checked above
                fee: uint72(fee), // <= book.fee < 2^72
                afterRound: afterRound,
                sizeDelta: int128(r.sizeDelta), // checked above
                acceptablePrice: r.acceptablePrice > type(uint128).max ? type(uint128).max : uint128(r.acceptablePrice)
            })
        );
        // The fee leaves the reserve: on an account whose policy may REDUCE, a REDUCE now waits for a later round.
        AccountLogic.markOwnerAction(s, r.accountId);
        emit IMarginEngine.OrderRequested(
            orderId, r.accountId, r.marketId, r.sizeDelta, r.acceptablePrice, r.deadline, r.reduceOnly, afterRound, fee
        );
    }

    /// @dev Records order `orderId` (`o`): appended to its account's pending list, its fields in the cell the entry
    ///      names (a settled order's cell, written before: README "Storage layout"), its account in the id index.
    function _storeOrder(
        AccountLogic.Storage storage s,
        AccountLogic.PendingList storage pending,
        uint256 orderId,
        AccountLogic.OrderSlot memory o
    ) private {
        uint256 cell = AccountLogic.pushPending(pending, orderId);
        AccountLogic.setOrderAccount(s, orderId, o.accountId);
        s.orderCells[o.accountId][cell] = o;
    }

    /// @dev The checks and the reservation of an order that may add risk: `OrderPending` while another waits, then
    ///      `_reserveOpenInterest` (the price and the feed's latest round).
    function _reserveRisk(
        AccountLogic.Storage storage s,
        AccountLogic.Env memory env,
        uint256 accountId,
        uint256 marketId,
        address asset,
        int256 sizeDelta
    ) private returns (uint256 px, uint80 roundId) {
        uint256 waiting = AccountLogic.pendingRiskOrder(s, accountId);
        if (waiting != 0) revert IMarginEngine.OrderPending(accountId, waiting);
        return _reserveOpenInterest(s, env, marketId, asset, sizeDelta);
    }

    /// @dev A request's own bounds: `ZeroSizeDelta`, `PositionTooLarge`, `InvalidDeadline`; an order stores its account
    ///      id in 32 bits (SafeCast's named error beyond: one account is created per transaction, 4.3e9 of them).
    function _checkRequest(uint256 accountId, uint256 marketId, int256 sizeDelta, uint256 deadline) private view {
        if (accountId > type(uint32).max) revert SafeCast.SafeCastOverflowedUintDowncast(32, accountId);
        if (sizeDelta == 0) revert IMarginEngine.ZeroSizeDelta();
        if (sizeDelta > type(int128).max || sizeDelta < -type(int128).max) {
            revert IMarginEngine.PositionTooLarge(marketId, sizeDelta);
        }
        uint256 latest = block.timestamp + MAX_ORDER_LIFETIME;
        if (deadline <= block.timestamp || deadline > latest) {
            revert IMarginEngine.InvalidDeadline(deadline, block.timestamp + 1, latest);
        }
    }

    /// @dev Reserves |sizeDelta| of open interest on the order's side (a buy: long, a sell: short) for an order that may
    ///      add risk, after checking the side's open interest, with every pending reservation and this one, against
    ///      the cap at the current price. The fill then needs no cap check: no later fall in pool capital (an LP's
    ///      withdrawal after seeing the fill round, finding N3) can cancel it. Reverts `OracleUnhealthy(asset)` when
    ///      the market's price is invalid now, and `OpenInterestCap`. Returns the price and the feed's latest round,
    ///      read in the same router call (`pokeRound`).
    function _reserveOpenInterest(
        AccountLogic.Storage storage s,
        AccountLogic.Env memory env,
        uint256 marketId,
        address asset,
        int256 sizeDelta
    ) private returns (uint256 px, uint80 roundId) {
        (, px, roundId) = env.oracle.pokeRound(asset); // px 0 when the oracle is invalid (as AccountLogic.pokePrice)
        if (px == 0) revert IMarginEngine.OracleUnhealthy(asset);
        AccountLogic.PendingOI storage p = s.pendingOI[marketId];
        bool long = sizeDelta > 0;
        // Stored + 1 (AccountLogic.PendingOI): `stored` is the reservation with this one, plus 1.
        uint256 stored = uint256(long ? p.long : p.short) + WadMath.abs(sizeDelta);
        _checkOpenInterest(s, env, marketId, px, long, stored - 1);
        if (long) p.long = stored.toUint128();
        else p.short = stored.toUint128();
    }

    /// @dev The next order id, and the execution fee moved from the account's USDC reserve into the escrow.
    function _escrowFee(AccountLogic.Storage storage s, AccountLogic.Env memory env, uint256 accountId)
        private
        returns (uint256 orderId, uint256 fee)
    {
        AccountLogic.OrderBook memory book = s.orderBook;
        fee = book.fee;
        if (fee != 0) {
            AccountLogic.Balance storage b = s.balances[accountId][env.settlementAsset];
            uint256 available = b.reserve;
            if (available < fee) revert IVault.InsufficientReserve(accountId, env.settlementAsset, available, fee);
            b.reserve = uint128(available - fee); // fee <= available < 2^128
        }
        orderId = uint256(book.lastOrderId) + 1;
        s.orderBook = AccountLogic.OrderBook(uint64(orderId), book.fee, (book.escrow + fee).toUint96());
    }

    /// @dev Removes a settled order (`o`, as stored; entry `entry` of its account's pending list) from the list (its
    ///      cell keeps the fields, stale, for a later request of the account to overwrite), releases the open interest
    ///      its request reserved (|sizeDelta| on its side unless reduce-only), and pays its escrowed fee to `keeper` as
    ///      a claimable reward: the tokens stay here, from the escrow into the pool's balance, set aside (not LP
    ///      capital), as every keeper reward.
    function closeOrder(
        AccountLogic.Storage storage s,
        address settlementAsset,
        uint256 entry,
        AccountLogic.OrderSlot memory o,
        address keeper
    ) external {
        if (!o.reduceOnly) {
            AccountLogic.PendingOI storage p = s.pendingOI[o.marketId];
            uint128 size = uint128(WadMath.abs(o.sizeDelta)); // |Δ| <= int128 max, checked at the request
            if (o.sizeDelta > 0) p.long -= size; // reserved at the request: the reservation (+ 1) holds it
            else p.short -= size;
        }
        uint256 fee = o.fee;
        AccountLogic.removePending(s.pendingOrders[o.accountId], entry); // the order is pending: entry < count
        if (fee == 0) return;
        s.orderBook.escrow -= uint96(fee); // the fee is part of the escrow
        s.pool.balance = AccountLogic.fit(0, settlementAsset, s.pool.balance + fee);
        AccountLogic.creditKeeperUnits(s, settlementAsset, keeper, fee);
    }

    /// @dev Fills `sizeDelta` on the account's position in `marketId` at `fillPx` (0: the current price, the test
    ///      engine's instant fill). Funding accrues to now at the current price; the position enters (and a
    ///      reduction realises) at the fill price; the trading fee is charged on the fill notional; new risk is
    ///      checked against IM with the traded market at the fill price (other markets at current prices), and, in
    ///      an instant fill only, against the open-interest cap at the current price (an order's request reserved
    ///      its open interest within the cap: `_reserveOpenInterest`).
    ///      See `IMarginEngine.requestOrder` for every rule; the engine has checked the caller (or the order) and the
    ///      market.
    function fill(AccountLogic.Storage storage s, AccountLogic.Env memory env, Fill memory f) external {
        if (f.sizeDelta == 0) revert IMarginEngine.ZeroSizeDelta();
        address asset = s.markets[f.marketId].asset;
        int256 oldSize = s.positions[f.accountId][f.marketId].size;
        // A fill that adds risk values the account below: its market's volatilities come with the price.
        bool increasesRisk = _addsRisk(oldSize, f.sizeDelta, f.reduceOnly);
        AccountLogic.Ctx memory ctx = AccountLogic.newCtx(env);
        uint256 nowPx = AccountLogic.pokePrice(ctx, asset, increasesRisk);
        uint256 px = f.fillPx == 0 ? nowPx : f.fillPx;
        if (f.sizeDelta > 0 ? px > f.acceptablePrice : px < f.acceptablePrice) {
            revert IMarginEngine.PriceNotAcceptable(px, f.acceptablePrice);
        }

        (int256 sizeDelta, int256 newSize) = _sizes(f.accountId, f.marketId, oldSize, f.sizeDelta, f.reduceOnly);
        if (increasesRisk && f.paused) revert IMarginEngine.PositionIncreasePaused();

        _trade(s, env, f.accountId, f.marketId, sizeDelta, px, nowPx);

        if (increasesRisk) {
            if (f.fillPx == 0) _checkOpenInterest(s, env, f.marketId, nowPx, newSize > 0, 0);
            _checkInitialMargin(s, ctx, f.accountId, asset, px);
        }
        // A fill the owner asked for: a REDUCE of a policy account waits for a round after it.
        AccountLogic.markOwnerAction(s, f.accountId);
    }

    /// @dev The fill's trade at `px`, its fee and settlement. Funding to now at the current price `nowPx` first: the
    ///      fill price prices the position, not the time before it.
    function _trade(
        AccountLogic.Storage storage s,
        AccountLogic.Env memory env,
        uint256 accountId,
        uint256 marketId,
        int256 sizeDelta,
        uint256 px,
        uint256 nowPx
    ) private {
        if (px != nowPx) AccountLogic.accrueFunding(s, marketId, nowPx);
        // Fee rounds up: the trader never pays less than feeRate of the traded notional.
        uint256 fee = WadMath.abs(sizeDelta).mulDivUp(px, WAD).wMulUp(AccountLogic.nano(s.markets[marketId].feeRate));
        AccountLogic.applyTrade(s, accountId, marketId, sizeDelta, px, fee);
        AccountLogic.changeSettlement(s, accountId, -fee.toInt256());
        AccountLogic.settle(s, env, accountId);
        // An owner who closes an underwater position leaves debt with nothing behind it: written off now.
        AccountLogic.writeOffIfEmpty(s, env, accountId);
    }

    /// @dev New risk's IM check after a fill: every price the account needs poked, then the traded market (and
    ///      collateral in its asset) at the fill price `px`, so the check does not depend on when the order is executed.
    function _checkInitialMargin(
        AccountLogic.Storage storage s,
        AccountLogic.Ctx memory ctx,
        uint256 accountId,
        address asset,
        uint256 px
    ) private {
        AccountLogic.pokeAccount(s, ctx, accountId);
        AccountLogic.reprice(ctx, asset, px);
        IMarginEngine.AccountState memory st = AccountLogic.valuation(s, ctx, accountId);
        if (st.equity < st.initialMargin.toInt256()) {
            revert IMarginEngine.BelowInitialMargin(accountId, st.equity, st.initialMargin);
        }
    }

    /// @dev The fill's size change (a reduce-only one clamped to the position: never more, never the same side) and
    ///      the size after it; reverts `NothingToReduce` / `PositionTooLarge`.
    function _sizes(uint256 accountId, uint256 marketId, int256 oldSize, int256 sizeDelta, bool reduceOnly)
        private
        pure
        returns (int256, int256 newSize)
    {
        if (reduceOnly) {
            if (oldSize == 0 || (oldSize > 0) == (sizeDelta > 0)) revert IMarginEngine.NothingToReduce(accountId, marketId);
            if (WadMath.abs(sizeDelta) > WadMath.abs(oldSize)) sizeDelta = -oldSize;
        }
        // Sizes are stored in 128 bits (IMarginEngine.Position): far beyond any open-interest cap, refused by name.
        if (sizeDelta > type(int128).max || sizeDelta < -type(int128).max) {
            revert IMarginEngine.PositionTooLarge(marketId, sizeDelta);
        }
        newSize = oldSize + sizeDelta; // both below 2^127 in size: no overflow
        if (newSize > type(int128).max || newSize < -type(int128).max) {
            revert IMarginEngine.PositionTooLarge(marketId, newSize);
        }
        return (sizeDelta, newSize);
    }

    /// @dev `_increasesRisk` of the fill as `_sizes` will leave it, judged before `_sizes` runs (and before the price,
    ///      whose errors come first): a reduce-only fill never adds risk (`_sizes` clamps it to the position, against
    ///      it); any other keeps its size change, except one beyond 128 bits, which `_sizes` refuses (not summed here).
    function _addsRisk(int256 oldSize, int256 sizeDelta, bool reduceOnly) private pure returns (bool) {
        if (reduceOnly || sizeDelta > type(int128).max || sizeDelta < -type(int128).max) return false;
        return _increasesRisk(oldSize, sizeDelta);
    }

    /// @dev Whether a trade of `sizeDelta` on a position of `oldSize` grows |size| or flips its side.
    function _increasesRisk(int256 oldSize, int256 sizeDelta) private pure returns (bool) {
        int256 newSize = oldSize + sizeDelta;
        return WadMath.abs(newSize) > WadMath.abs(oldSize) || (oldSize > 0 && newSize < 0)
            || (oldSize < 0 && newSize > 0);
    }

    /// @dev Only the side the trade grows is checked: a trade that grows the smaller side reduces the
    ///      pool's exposure and stays allowed even when the other side is over a shrunken cap. The side's open
    ///      interest plus `pending` (WAD units: the reservations of pending orders and the new one at a request, 0 in
    ///      an instant fill), valued at `px` rounded up, must not exceed the governance figure `oiCapUsd`, further
    ///      limited to `oiCapFraction` of pool capital: pool capital gates new risk here, and nowhere else (it never
    ///      enters a requirement).
    function _checkOpenInterest(
        AccountLogic.Storage storage s,
        AccountLogic.Env memory env,
        uint256 marketId,
        uint256 px,
        bool long,
        uint256 pending
    ) private view {
        IMarginEngine.MarketState storage st = s.marketStates[marketId];
        AccountLogic.MarketSlot storage m = s.markets[marketId];
        uint256 oiUsd = (uint256(long ? st.longOI : st.shortOI) + pending).mulDivUp(px, WAD);
        // Capital rounded down: the cap is never looser than the pool can back.
        uint256 capUsd = (AccountLogic.poolCapital(s) * env.settlementScale).wMulDown(AccountLogic.nano(m.oiCapFraction));
        if (m.oiCapUsd < capUsd) capUsd = m.oiCapUsd;
        if (oiUsd > capUsd) revert IMarginEngine.OpenInterestCap(marketId, oiUsd, capUsd);
    }
}
