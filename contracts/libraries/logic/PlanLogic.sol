// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {SignedMath} from "@openzeppelin/contracts/utils/math/SignedMath.sol";

import {IMarginEngine} from "../../interfaces/IMarginEngine.sol";
import {IRebalancer} from "../../interfaces/IRebalancer.sol";
import {WadMath} from "../WadMath.sol";
import {CloseMath} from "../CloseMath.sol";
import {AccountLogic} from "./AccountLogic.sol";
import "../Constants.sol" as C;

/// @title PlanLogic
/// @notice The rebalance plan (README "Rebalancing", steps 2-5): one calculation behind `rebalance`,
///         `rebalanceBatch`, `needsRebalance` and `checkUpkeep`, so a keeper's simulation and the state change
///         cannot disagree.
/// @dev Internal functions only. The plan reads prices from the call's cache alone: the state-changing doors load it
///      with pokes (`pokePrices`), the views through the oracle's view door (`viewPrices`), which counts an unpoked
///      round exactly as a poke would. Both load the same assets, in the same order.
library PlanLogic {
    using WadMath for uint256;

    uint256 private constant WAD = 1e18;

    /// @dev One plan under construction (memory, so the planning steps stay within the stack).
    struct Draft {
        uint256 accountId;
        AccountLogic.Policy policy; // as stored: top-up assets as listing indices
        IMarginEngine.AccountState state;
        uint256 closeFeeUsd; // trading fee of closing every position (φN): set only where a REDUCE is weighed
        uint256 maintenanceNowUsd; // MM at the current volatility: what a rescue must reach the liquidation target of
        uint256 feeUsd;
        uint256 toppedUpUsd;
        uint256 reducedNotionalUsd;
        uint256 releasedUsd;
        uint256 count; // assets used so far
        address[] assets;
        uint256[] amounts;
        uint256 indices; // listing index of assets[k] in bits [4k, 4k + 4), as in AccountLogic.Policy
        uint256 reduceFraction;
        uint8 action;
    }

    /// @dev Opt-in and cooldown (at most one rebalance per account per block), before any oracle is touched: the
    ///      keeper that loses a race for an account pays for these reads only.
    function gate(AccountLogic.Storage storage s, uint256 accountId) internal view returns (IRebalancer.Status) {
        if (s.policies[accountId].actions == 0) return IRebalancer.Status.NotOptedIn;
        if (block.timestamp < AccountLogic.rebalanceReadyAt(s, accountId)) return IRebalancer.Status.Cooldown;
        return IRebalancer.Status.Ready;
    }

    /// @dev Pokes every price the plan may read: the account's (returns the first market asset without a valid
    ///      price, address(0) when all are priced), the gas asset and the policy assets the account holds a reserve
    ///      in. Policy assets without a reserve are never read (a top-up skips them; a release reads only margin
    ///      assets, which the account's own walk loaded).
    function pokePrices(AccountLogic.Storage storage s, AccountLogic.Ctx memory ctx, uint256 accountId)
        internal
        returns (address unpriced)
    {
        unpriced = AccountLogic.pokeAccountPrices(s, ctx, accountId, true);
        if (unpriced != address(0)) return unpriced;
        AccountLogic.pokeCollateral(ctx, ctx.env.gasAsset);
        (uint256 count, uint256 indices) = AccountLogic.policyAssets(s, accountId);
        for (uint256 k; k < count; ++k) {
            address asset = s.assetList[AccountLogic.packedIndex(indices, k)].token;
            if (s.balances[accountId][asset].reserve != 0) AccountLogic.pokeCollateral(ctx, asset);
        }
    }

    /// @dev The view door of `pokePrices`.
    function viewPrices(AccountLogic.Storage storage s, AccountLogic.Ctx memory ctx, uint256 accountId)
        internal
        view
        returns (address unpriced)
    {
        unpriced = AccountLogic.viewAccountPrices(s, ctx, accountId);
        if (unpriced != address(0)) return unpriced;
        AccountLogic.viewCollateral(ctx, ctx.env.gasAsset);
        (uint256 count, uint256 indices) = AccountLogic.policyAssets(s, accountId);
        for (uint256 k; k < count; ++k) {
            address asset = s.assetList[AccountLogic.packedIndex(indices, k)].token;
            if (s.balances[accountId][asset].reserve != 0) AccountLogic.viewCollateral(ctx, asset);
        }
    }

    /// @dev The plan for an account that passed `gate`, on the prices `pokePrices`/`viewPrices` loaded and the one
    ///      valuation `d.state` is filled with here.
    function plan(AccountLogic.Storage storage s, AccountLogic.Ctx memory ctx, uint256 accountId)
        internal
        view
        returns (IRebalancer.Status, Draft memory d)
    {
        d.accountId = accountId;
        d.policy = AccountLogic.policyOf(s, accountId);
        // The initial margin only for a policy that may RELEASE (its floor); TOP_UP and REDUCE never read it.
        d.state = AccountLogic.valuation(s, ctx, accountId, d.policy.actions & C.RELEASE != 0);
        uint256 h = d.state.health;
        // Below 1 only a rescue may act: TOP_UP allowed and the reserve lifting the account to the liquidation
        // target (checked on the plan below, and again after it is applied).
        if (h < WAD && d.policy.actions & C.TOP_UP == 0) return (IRebalancer.Status.Liquidatable, d);
        bool low = h < d.policy.triggerRatio;
        // RELEASE only while positions are open: idle margin of an account without positions is the owner's
        // to move (a fee for it would buy no protection).
        // Nor while an order that may add risk waits for its round: its fill is judged on this margin.
        bool high = d.policy.releaseRatio != 0 && h > d.policy.releaseRatio && d.policy.actions & C.RELEASE != 0
            && d.state.maintenanceMargin != 0 && AccountLogic.pendingRiskOrder(s, accountId) == 0;
        if (!low && !high) return (IRebalancer.Status.InBand, d);

        if (h < WAD) d.maintenanceNowUsd = AccountLogic.currentVolMaintenance(s, ctx, accountId);
        d.feeUsd = h < WAD ? _rescueFee(s, ctx, d.policy.maxFeeUsd) : keeperFee(s, ctx, d.policy.maxFeeUsd);
        d.assets = new address[](d.policy.assetCount);
        d.amounts = new uint256[](d.policy.assetCount);
        if (low) {
            d.action = _planRestore(s, ctx, d);
        } else {
            d.action = _planRelease(s, ctx, d);
        }
        if (h < WAD && (d.toppedUpUsd == 0 || !_rescues(s, ctx, d))) return (IRebalancer.Status.Liquidatable, d);
        if (d.action == 0) return (IRebalancer.Status.NoAction, d);

        address[] memory assets = d.assets;
        uint256[] memory amounts = d.amounts;
        uint256 n = d.count;
        assembly ("memory-safe") {
            mstore(assets, n)
            mstore(amounts, n)
        }
        return (IRebalancer.Status.Ready, d);
    }

    /// @dev The draft as the public plan struct (`needsRebalance`).
    function toPlan(Draft memory d, address keeper) internal pure returns (IMarginEngine.RebalancePlan memory p) {
        p.action = d.action;
        p.assets = d.assets;
        p.amounts = d.amounts;
        p.reduceFraction = d.reduceFraction;
        p.feeUsd = d.feeUsd;
        p.keeper = keeper;
    }

    /// @dev min(maxFeeUsd, baseFeeUsd + gasUnits × block.basefee × gas-asset price), whole settlement units. The gas
    ///      asset's price comes from the call's cache (loaded by `pokePrices`/`viewPrices`).
    function keeperFee(AccountLogic.Storage storage s, AccountLogic.Ctx memory ctx, uint256 maxFeeUsd)
        internal
        view
        returns (uint256 fee)
    {
        (fee,) = _uncappedFee(s, ctx);
        if (fee > maxFeeUsd) fee = maxFeeUsd;
        // Whole settlement-token units, rounded down: the keeper is credited exactly what the account is charged.
        fee -= fee % ctx.env.settlementScale;
    }

    /// @dev baseFeeUsd + gasUnits × block.basefee × gas-asset price: the keeper fee before the owner's cap. Gas cost in
    ///      wei × USD per ETH, rounded down (the account pays no more than the gas is worth); with no valid gas-asset
    ///      price (0 in the cache) the flat part only, and the account stays protected; `priced` says which.
    function _uncappedFee(AccountLogic.Storage storage s, AccountLogic.Ctx memory ctx)
        private
        view
        returns (uint256 fee, bool priced)
    {
        AccountLogic.HotParams memory p = s.hot;
        (, uint256 ethPx) = AccountLogic.lookup(ctx, ctx.env.gasAsset);
        return (uint256(p.baseFeeUsd) + (uint256(p.gasUnits) * block.basefee).wMulDown(ethPx), ethPx != 0);
    }

    /// @dev Whether a REDUCE may act now. It closes at the current round, so the owner must not be able to choose
    ///      that round: only on a round of every held market published after his last action that could call for it
    ///      (a price he could not know then, README "Orders"), and only while its keeper is paid in full
    ///      (`maxFeeUsd` >= the uncapped keeper fee at this block's base fee, the gas asset validly priced). Keepers run a REDUCE they are paid for
    ///      at the first block it may act, so it is not a standing option for an owner who runs it himself whenever
    ///      the round suits him (review finding N5: a policy nobody is paid to run).
    function _mayReduce(AccountLogic.Storage storage s, AccountLogic.Ctx memory ctx, Draft memory d)
        private
        view
        returns (bool)
    {
        // With no valid gas-asset price the fee is its flat part only: whether the keeper is paid cannot be told,
        // so no REDUCE (review finding M4: during a gas-asset breaker trip, N5's option would come back).
        (uint256 fee, bool priced) = _uncappedFee(s, ctx);
        return priced && fee <= d.policy.maxFeeUsd
            && AccountLogic.roundsAfter(s, ctx, d.accountId, d.policy.ownerActedAt);
    }

    /// @dev h < trigger. TOP_UP (skipped above 1 under REDUCE_FIRST when a REDUCE may act now), in the owner's
    ///      order, the least reserve value that brings health to target
    ///      counting the fee as paid (ΔC = target·MM − (E − fee)); if still short and allowed, REDUCE every
    ///      position by CloseMath's least fraction, with E' = E − fee + ΔC topped up and the trading fee of
    ///      closing everything (φN) as the close cost. Returns the action bits (0 = nothing useful).
    function _planRestore(AccountLogic.Storage storage s, AccountLogic.Ctx memory ctx, Draft memory d)
        private
        view
        returns (uint8 action)
    {
        // Requirement rounded up, equity (after the fee) as is: the target is reached, not approached. A rescue
        // (health < 1) also does what the liquidation it pre-empts would: the liquidation target against MM at the
        // current volatility, with a settlement unit to spare (rounding).
        uint256 scale = ctx.env.settlementScale;
        uint256 target = d.policy.targetRatio;
        int256 required;
        if (d.state.health < WAD) {
            target = Math.max(target, s.risk.liquidationTargetRatio);
            required = _rescueRequired(s, ctx, d);
        }
        required = SignedMath.max(required, int256(d.state.maintenanceMargin.wMulUp(target)));
        int256 equity = d.state.equity - int256(d.feeUsd);
        // A REDUCE closes at the current round: only when the owner cannot choose that round (`_mayReduce`).
        // REDUCE_FIRST (set only with REDUCE): above 1, when a REDUCE may act now, it restores the target alone and no
        // reserve is spent — unless only closing everything would (no partial close reaches the target): the reserve
        // goes first then. Evaluated only for such policies: others pay nothing for it.
        // `_mayReduce` is evaluated at most once (it reads a round of every held market): here for such policies,
        // below for the others, only when a REDUCE is needed.
        // The close cost (φN of every position) only where a REDUCE is weighed: a top-up alone never reads it.
        bool known = d.policy.actions & C.REDUCE_FIRST != 0 && d.state.health >= WAD;
        bool mayReduce = known && _mayReduce(s, ctx, d);
        if (mayReduce) d.closeFeeUsd = AccountLogic.closeFeeUsd(s, ctx, d.accountId);
        bool reduceFirst = mayReduce && CloseMath.leastCloseFraction(
            target, d.state.maintenanceMargin, s.hot.keeperReward, equity - int256(scale), d.closeFeeUsd
        ) < WAD;
        uint256 added;
        if (d.policy.actions & C.TOP_UP != 0 && required > equity && !reduceFirst) {
            added = _planTopUp(s, ctx, d, uint256(required - equity));
            if (added != 0) action = C.TOP_UP;
        }
        equity += int256(added);
        if (
            required > equity && d.policy.actions & C.REDUCE != 0
                && (known ? mayReduce : _mayReduce(s, ctx, d))
        ) {
            if (!known) d.closeFeeUsd = AccountLogic.closeFeeUsd(s, ctx, d.accountId); // else read above
            // One settlement-token unit less equity: realised PnL settles against USDC margin rounded up to a
            // whole unit (against the account), and the plan must still reach the target after that.
            uint256 f = CloseMath.leastCloseFraction(
                target, d.state.maintenanceMargin, s.hot.keeperReward, equity - int256(scale), d.closeFeeUsd
            );
            if (f == WAD) {
                // Everything closes: the fee takes at most what is left after the close (less a unit of
                // rounding), never more, so the pool is never left owed by an empty account.
                int256 left = equity + int256(d.feeUsd) - int256(d.closeFeeUsd) - int256(scale);
                uint256 cap = left > 0 ? uint256(left) : 0;
                if (d.feeUsd > cap) d.feeUsd = cap - (cap % scale);
            }
            d.reduceFraction = f;
            d.reducedNotionalUsd = d.state.notional.wMulUp(f);
            return action | C.REDUCE;
        }
        // A top-up alone must more than pay its own fee (plus a token unit of settlement rounding), else the
        // health-never-falls rule would refuse it.
        if (action != 0 && added <= d.feeUsd + scale) return 0;
    }

    /// @dev Reserve → margin in the policy's order until `needUsd` of collateral value is added. Each amount
    ///      is rounded up (against the account: the target is reached); the value counted is the valuation's
    ///      own, price then haircut rounded down. Returns the value added.
    function _planTopUp(AccountLogic.Storage storage s, AccountLogic.Ctx memory ctx, Draft memory d, uint256 needUsd) private view returns (uint256 added) {
        for (uint256 k; k < d.policy.assetCount && added < needUsd; ++k) {
            uint256 index = AccountLogic.policyAssetIndex(d.policy, k);
            AccountLogic.Asset memory cfg = s.assetList[index];
            uint256 available = s.balances[d.accountId][cfg.token].reserve;
            if (available == 0) continue;
            (, uint256 px) = AccountLogic.lookup(ctx, cfg.token); // 0 when invalid or not loaded: skipped
            if (px == 0 || cfg.haircut == 0) continue;
            uint256 amount = WadMath.toAmountUp((needUsd - added).wDivUp(cfg.haircut), px, cfg.decimals);
            if (amount > available) amount = available;
            uint256 value = WadMath.toValueDown(amount, px, cfg.decimals).wMulDown(cfg.haircut);
            if (value == 0) continue;
            added += value;
            _take(d, cfg.token, index, amount);
        }
        d.toppedUpUsd = added;
    }

    /// @dev h > release. Margin → reserve in the policy's order down to max(target·MM, IM) with the fee
    ///      counted as paid and one settlement unit kept (the settle after the fee may take a sub-unit positive
    ///      settlement balance with it). Each amount rounds down and the value it removes is bounded above
    ///      (price and haircut rounded up), so the account never lands below target or IM. Nothing useful
    ///      unless the release is worth more than the fee.
    function _planRelease(AccountLogic.Storage storage s, AccountLogic.Ctx memory ctx, Draft memory d) private view returns (uint8) {
        uint256 floorUsd = Math.max(d.state.maintenanceMargin.wMulUp(d.policy.targetRatio), d.state.initialMargin)
            + ctx.env.settlementScale;
        int256 excessSigned = d.state.equity - int256(d.feeUsd) - int256(floorUsd);
        if (excessSigned <= 0) return 0;
        uint256 excess = uint256(excessSigned);
        uint256 released;
        for (uint256 k; k < d.policy.assetCount && excess != 0; ++k) {
            uint256 index = AccountLogic.policyAssetIndex(d.policy, k);
            AccountLogic.Asset memory cfg = s.assetList[index];
            uint256 margin = s.balances[d.accountId][cfg.token].margin;
            if (margin == 0) continue;
            (, uint256 px) = AccountLogic.lookup(ctx, cfg.token); // 0 when invalid or not loaded: skipped
            if (px == 0 || cfg.haircut == 0) continue;
            uint256 amount = WadMath.toAmountDown(excess.wDivDown(cfg.haircut), px, cfg.decimals);
            if (amount > margin) amount = margin;
            if (amount == 0) continue;
            uint256 removed = WadMath.toValueUp(amount, px, cfg.decimals).wMulUp(cfg.haircut);
            excess = removed >= excess ? 0 : excess - removed;
            released += removed;
            _take(d, cfg.token, index, amount);
        }
        if (released <= d.feeUsd) return 0;
        d.releasedUsd = released;
        return C.RELEASE;
    }

    /// @dev A rescue pays its keeper at least what the liquidation it replaces would (the flat keeper reward,
    ///      within the owner's cap; whole token units), so a keeper always prefers the rescue or is indifferent.
    function _rescueFee(AccountLogic.Storage storage s, AccountLogic.Ctx memory ctx, uint256 maxFeeUsd)
        private
        view
        returns (uint256 fee)
    {
        fee = keeperFee(s, ctx, maxFeeUsd);
        uint256 reward = Math.min(s.hot.keeperReward, maxFeeUsd);
        reward -= reward % ctx.env.settlementScale;
        if (fee < reward) fee = reward;
    }

    /// @dev A rescue's top-up alone (after the fee) lifts the account to the liquidation target against MM at the
    ///      current volatility: `AccountLogic.canRescue`'s rule, on the plan's own amounts.
    function _rescues(AccountLogic.Storage storage s, AccountLogic.Ctx memory ctx, Draft memory d)
        private
        view
        returns (bool)
    {
        return d.state.equity - int256(d.feeUsd) + int256(d.toppedUpUsd) >= _rescueRequired(s, ctx, d);
    }

    /// @dev Equity a rescue must leave: liquidationTarget × MM at the current volatility, one settlement unit more.
    function _rescueRequired(AccountLogic.Storage storage s, AccountLogic.Ctx memory ctx, Draft memory d)
        private
        view
        returns (int256)
    {
        return int256(d.maintenanceNowUsd.wMulUp(s.risk.liquidationTargetRatio) + ctx.env.settlementScale);
    }

    /// @dev Appends `amount` of the asset listed at `index` to the plan.
    function _take(Draft memory d, address token, uint256 index, uint256 amount) private pure {
        uint256 n = d.count;
        d.assets[n] = token;
        d.amounts[n] = amount;
        d.indices |= index << (4 * n); // index < MAX_ASSETS = 16, n < MAX_ASSETS: 64 bits
        d.count = n + 1;
    }
}
