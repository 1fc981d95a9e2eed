// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {IMarginEngine} from "../../interfaces/IMarginEngine.sol";
import {IVault} from "../../interfaces/IVault.sol";
import {WadMath} from "../WadMath.sol";
import {AccountLogic} from "./AccountLogic.sol";
import {CloseMath} from "../CloseMath.sol";

/// @title LiquidationLogic
/// @notice `liquidate` and `buyCollateral` of the MarginEngine (run by delegatecall from it). See IMarginEngine.
library LiquidationLogic {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;
    using WadMath for uint256;

    uint256 private constant WAD = 1e18;

    /// @dev See `IMarginEngine.liquidate`.
    function liquidate(AccountLogic.Storage storage s, AccountLogic.Env memory env, uint256 accountId)
        external
        returns (uint256 fraction)
    {
        AccountLogic.Ctx memory ctx = AccountLogic.newCtx(env);
        AccountLogic.pokeAccount(s, ctx, accountId);
        IMarginEngine.AccountState memory before = AccountLogic.valuation(s, ctx, accountId, false);
        if (before.health >= WAD) revert IMarginEngine.NotLiquidatable(accountId, before.health);
        // The owner's reserve, under the owner's policy, comes first: while a rescue can lift the account to the
        // liquidation target, any keeper may call the rebalance (and is paid at least the flat reward for it).
        if (AccountLogic.canRescue(s, ctx, accountId, before)) revert IMarginEngine.RescueAvailable(accountId);

        IMarginEngine.RiskParams memory r = s.risk;
        // Far under, everything closes: the requirement at the current volatility is not needed.
        fraction = before.health < r.fullLiquidationHealth
            ? WAD
            : liquidationFraction(before, AccountLogic.currentVolMaintenance(s, ctx, accountId), r, env.settlementScale);
        (uint256 closedNotional,) = AccountLogic.closeFraction(s, ctx, accountId, fraction, false);

        // Penalty rounds up (against the account); the liquidator's share rounds down (for the protocol).
        uint256 penalty = closedNotional.wMulUp(r.liquidationPenalty);
        uint256 keeperShareUsd = penalty.wMulDown(r.keeperPenaltyShare);
        uint256 keeperUsd = r.keeperReward + keeperShareUsd;
        AccountLogic.changeSettlement(s, accountId, -(r.keeperReward + penalty).toInt256());
        // The liquidator is credited (claimable) and insurance is funded by the pool (the clearing house); the
        // account's settlement balance owes the pool the same amount and is settled right after. Token amounts
        // round down.
        AccountLogic.creditKeeper(s, env, msg.sender, keeperUsd);
        AccountLogic.addInsurance(s, (penalty - keeperShareUsd) / env.settlementScale);
        AccountLogic.settle(s, env, accountId);

        IMarginEngine.AccountState memory afterState = AccountLogic.valuation(s, ctx, accountId, false);
        AccountLogic.writeOffIfEmpty(s, env, accountId);
        emit IMarginEngine.Liquidated(
            accountId, msg.sender, fraction, closedNotional, penalty, keeperUsd, before.health, afterState.health
        );
    }

    /// @dev See `IMarginEngine.buyCollateral`.
    function buyCollateral(
        AccountLogic.Storage storage s,
        AccountLogic.Env memory env,
        uint256 accountId,
        address token,
        uint256 repay,
        uint256 minAmountOut
    ) external returns (uint256 amountOut) {
        int256 debtS = s.accounts[accountId].settlement;
        uint256 available = s.balances[accountId][token].margin;
        if (debtS >= 0 || token == env.settlementAsset || available == 0 || repay == 0) {
            revert IMarginEngine.NothingToBuy(accountId);
        }
        AccountLogic.Ctx memory ctx = AccountLogic.newCtx(env);
        AccountLogic.pokeAccount(s, ctx, accountId);
        if (s.accounts[accountId].positionMask != 0) {
            IMarginEngine.AccountState memory st = AccountLogic.valuation(s, ctx, accountId, false);
            if (st.health >= WAD) revert IMarginEngine.NotLiquidatable(accountId, st.health);
            // As `liquidate`: the account's own reserve has priority over a sale of its collateral at the discount.
            if (AccountLogic.canRescue(s, ctx, accountId, st)) revert IMarginEngine.RescueAvailable(accountId);
        }
        (amountOut, repay) = _quote(s, ctx, uint256(-debtS), token, repay, available);
        if (amountOut < minAmountOut) revert IMarginEngine.SlippageExceeded(amountOut, minAmountOut);

        // The repay is capped at the debt rounded up to a whole unit: the sub-unit overshoot is the protocol's, so
        // the balance lands at 0, never above (one change, one event).
        {
            int256 debt = s.accounts[accountId].settlement;
            int256 credit = (repay * env.settlementScale).toInt256();
            AccountLogic.changeSettlement(s, accountId, credit > -debt ? -debt : credit);
        }
        // The repay becomes the pool's; the collateral leaves custody to the buyer.
        AccountLogic.pullTokens(s, env.settlementAsset, repay);
        s.pool.balance += repay.toUint128();
        AccountLogic.takeMargin(s, accountId, token, s.assetSlot[token] - 1, amountOut); // listed: priced above
        emit IVault.MarginDebited(accountId, token, msg.sender, amountOut);
        AccountLogic.pushTokens(s, token, msg.sender, amountOut);
        emit IMarginEngine.CollateralBought(accountId, msg.sender, token, repay, amountOut);

        AccountLogic.writeOffIfEmpty(s, env, accountId);
    }

    /// @dev Collateral out for `repay` (capped at the debt) at the discounted oracle price, and the repay
    ///      actually due when the margin available is the limit.
    function _quote(
        AccountLogic.Storage storage s,
        AccountLogic.Ctx memory ctx,
        uint256 debtUsd,
        address token,
        uint256 repay,
        uint256 available
    ) private view returns (uint256 amountOut, uint256 repaid) {
        uint256 scale = ctx.env.settlementScale;
        // Debt in settlement-token units, rounded up: the buyer may repay all of it.
        uint256 debt = debtUsd.mulDivUp(1, scale);
        repaid = repay > debt ? debt : repay;
        AccountLogic.Asset memory cfg = AccountLogic.listedAsset(s, token);
        uint256 discounted = AccountLogic.cachedPrice(ctx, token).wMulDown(WAD - s.risk.collateralDiscount);
        // Collateral out for the repaid value at the discounted price, rounded down (for the account).
        amountOut = WadMath.toAmountDown(repaid * scale, discounted, cfg.decimals);
        if (amountOut > available) {
            amountOut = available;
            // The buyer pays for all of it at the discounted price, rounded up (for the account).
            repaid = Math.mulDiv(available, discounted, (10 ** cfg.decimals) * scale, Math.Rounding.Ceil);
        }
    }

    /// @dev The least fraction of every position whose close restores `liquidationTargetRatio` against `mmNow`,
    ///      the maintenance margin at the current volatility (`currentVolMaintenance`, >= MM), counting the
    ///      penalty (the close cost, p·N) and the keeper reward R as paid (CloseMath with equity E − R, less one
    ///      settlement unit of rounding); 1 (close
    ///      all) when the account is far under (health < fullLiquidationHealth) or the rest would be dust.
    function liquidationFraction(
        IMarginEngine.AccountState memory st,
        uint256 mmNow,
        IMarginEngine.RiskParams memory r,
        uint256 settlementScale
    ) internal pure returns (uint256) {
        if (st.health < r.fullLiquidationHealth) return WAD;
        // One settlement unit less equity: the settle after the close rounds to whole token units against the
        // account, and the target must hold after it (rounding favours the protocol).
        uint256 f = CloseMath.leastCloseFraction(
            r.liquidationTargetRatio,
            mmNow,
            r.keeperReward,
            st.equity - int256(uint256(r.keeperReward)) - int256(settlementScale),
            st.notional.wMulUp(r.liquidationPenalty)
        );
        if (f == WAD) return WAD;
        uint256 remaining = (st.notional * (WAD - f)) / WAD;
        if (remaining < r.dustNotional) return WAD;
        return f;
    }
}
