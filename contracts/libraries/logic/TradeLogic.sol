// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {IMarginEngine} from "../../interfaces/IMarginEngine.sol";
import {WadMath} from "../WadMath.sol";
import {AccountLogic} from "./AccountLogic.sol";

/// @title TradeLogic
/// @notice `modifyPosition` of the MarginEngine (run by delegatecall from it). See IMarginEngine.
library TradeLogic {
    using SafeCast for uint256;
    using WadMath for uint256;

    uint256 private constant WAD = 1e18;

    /// @dev See `IMarginEngine.modifyPosition`; the engine has checked the caller and the market.
    function modifyPosition(
        AccountLogic.Storage storage s,
        AccountLogic.Env memory env,
        uint256 accountId,
        uint256 marketId,
        int256 sizeDelta,
        uint256 acceptablePrice,
        bool paused
    ) external {
        if (sizeDelta == 0) revert IMarginEngine.ZeroSizeDelta();
        IMarginEngine.MarketParams memory m = s.markets[marketId];

        AccountLogic.Ctx memory ctx = AccountLogic.newCtx(env);
        uint256 px = AccountLogic.pokePrice(ctx, m.asset);
        if (sizeDelta > 0 ? px > acceptablePrice : px < acceptablePrice) {
            revert IMarginEngine.PriceNotAcceptable(px, acceptablePrice);
        }

        int256 oldSize = s.positions[accountId][marketId].size;
        // Sizes are stored in 128 bits (IMarginEngine.Position): far beyond any open-interest cap, refused by name.
        if (sizeDelta > type(int128).max || sizeDelta < -type(int128).max) {
            revert IMarginEngine.PositionTooLarge(marketId, sizeDelta);
        }
        int256 newSize = oldSize + sizeDelta; // both below 2^127 in size: no overflow
        if (newSize > type(int128).max || newSize < -type(int128).max) {
            revert IMarginEngine.PositionTooLarge(marketId, newSize);
        }
        bool increasesRisk = WadMath.abs(newSize) > WadMath.abs(oldSize) || (oldSize > 0 && newSize < 0)
            || (oldSize < 0 && newSize > 0);
        if (increasesRisk && paused) revert IMarginEngine.PositionIncreasePaused();

        // Fee rounds up: the trader never pays less than feeRate of the traded notional.
        uint256 fee = WadMath.abs(sizeDelta).mulDivUp(px, WAD).wMulUp(m.feeRate);
        AccountLogic.applyTrade(s, accountId, marketId, sizeDelta, px, fee);
        AccountLogic.changeSettlement(s, accountId, -fee.toInt256());
        AccountLogic.settle(s, env, accountId);
        // An owner who closes an underwater position leaves debt with nothing behind it: written off now.
        AccountLogic.writeOffIfEmpty(s, env, accountId);

        if (increasesRisk) {
            _checkOpenInterest(s, env, marketId, m, px, newSize > 0);
            AccountLogic.pokeAccount(s, ctx, accountId);
            IMarginEngine.AccountState memory st = AccountLogic.valuation(s, ctx, accountId);
            if (st.equity < st.initialMargin.toInt256()) {
                revert IMarginEngine.BelowInitialMargin(accountId, st.equity, st.initialMargin);
            }
        }
    }

    /// @dev Only the side the trade grew is checked: a trade that grows the smaller side reduces the
    ///      pool's exposure and stays allowed even when the other side is over a shrunken cap. The cap is the
    ///      governance figure `oiCapUsd`, further limited to `oiCapFraction` of pool capital: pool capital gates
    ///      new risk here, and nowhere else (it never enters a requirement).
    function _checkOpenInterest(
        AccountLogic.Storage storage s,
        AccountLogic.Env memory env,
        uint256 marketId,
        IMarginEngine.MarketParams memory m,
        uint256 px,
        bool long
    ) private view {
        IMarginEngine.MarketState storage st = s.marketStates[marketId];
        uint256 oiUsd = uint256(long ? st.longOI : st.shortOI).mulDivUp(px, WAD);
        // Capital rounded down: the cap is never looser than the pool can back.
        uint256 capUsd = (AccountLogic.poolCapital(s) * env.settlementScale).wMulDown(m.oiCapFraction);
        if (m.oiCapUsd < capUsd) capUsd = m.oiCapUsd;
        if (oiUsd > capUsd) revert IMarginEngine.OpenInterestCap(marketId, oiUsd, capUsd);
    }
}
