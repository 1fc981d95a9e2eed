// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IMarginEngine} from "../../interfaces/IMarginEngine.sol";
import {WadMath} from "../WadMath.sol";
import {AccountLogic} from "./AccountLogic.sol";
import "../Constants.sol" as C;

/// @title RebalanceLogic
/// @notice The engine side of rebalancing (run by delegatecall from the MarginEngine): policy validation
///         and `applyRebalance`, which enforces the owner's policy whatever a module computed.
library RebalanceLogic {
    using WadMath for uint256;

    uint256 private constant WAD = 1e18;

    /// @dev See `IMarginEngine.setRebalancePolicy`. Each broken rule has its own error.
    function setPolicy(
        AccountLogic.Storage storage s,
        AccountLogic.Env memory env,
        uint256 accountId,
        IMarginEngine.RebalancePolicy calldata p
    ) external {
        if (p.module == address(0)) {
            delete s.policies[accountId];
            emit IMarginEngine.RebalancePolicySet(accountId, p);
            return;
        }
        if (!s.rebalancers[p.module]) revert IMarginEngine.RebalancerNotRegistered(p.module);
        if (p.triggerRatio <= WAD) revert IMarginEngine.PolicyTriggerTooLow(p.triggerRatio);
        if (p.targetRatio < uint256(p.triggerRatio) + C.MIN_REBALANCE_BAND) {
            revert IMarginEngine.PolicyBandTooNarrow(p.triggerRatio, p.targetRatio, C.MIN_REBALANCE_BAND);
        }
        if (p.targetRatio > C.MAX_REBALANCE_TARGET) {
            revert IMarginEngine.PolicyTargetTooHigh(p.targetRatio, C.MAX_REBALANCE_TARGET);
        }
        if (p.releaseRatio != 0 && p.releaseRatio < uint256(p.targetRatio) + C.MIN_REBALANCE_BAND) {
            revert IMarginEngine.PolicyBandTooNarrow(p.targetRatio, p.releaseRatio, C.MIN_REBALANCE_BAND);
        }
        if (p.actions == 0) revert IMarginEngine.PolicyNoActions();
        if (p.actions & ~C.ALL_ACTIONS != 0) revert IMarginEngine.PolicyUnknownActions(p.actions);
        if (p.actions & C.RELEASE != 0 && p.releaseRatio == 0) revert IMarginEngine.PolicyReleaseRatioMissing();
        if (p.actions & (C.TOP_UP | C.RELEASE) != 0 && p.topUpAssets.length == 0) {
            revert IMarginEngine.PolicyTopUpAssetsMissing();
        }
        if (p.topUpAssets.length > C.MAX_ASSETS) {
            revert IMarginEngine.PolicyTooManyAssets(p.topUpAssets.length, C.MAX_ASSETS);
        }
        for (uint256 i; i < p.topUpAssets.length; ++i) {
            address asset = p.topUpAssets[i];
            if (!env.vault.assetConfig(asset).listed) revert IMarginEngine.PolicyAssetNotListed(asset);
            for (uint256 j; j < i; ++j) {
                if (p.topUpAssets[j] == asset) revert IMarginEngine.PolicyDuplicateAsset(asset);
            }
        }
        if (p.cooldown > C.MAX_REBALANCE_COOLDOWN) {
            revert IMarginEngine.PolicyCooldownTooLong(p.cooldown, C.MAX_REBALANCE_COOLDOWN);
        }
        if (p.maxFeeUsd > C.MAX_REBALANCE_FEE) revert IMarginEngine.PolicyFeeTooHigh(p.maxFeeUsd, C.MAX_REBALANCE_FEE);
        s.policies[accountId] = p;
        emit IMarginEngine.RebalancePolicySet(accountId, p);
    }

    /// @dev See `IMarginEngine.applyRebalance`.
    function applyRebalance(
        AccountLogic.Storage storage s,
        AccountLogic.Env memory env,
        uint256 accountId,
        IMarginEngine.RebalancePlan calldata plan
    ) external returns (uint256 hBefore, uint256 hAfter) {
        IMarginEngine.RebalancePolicy storage policy = s.policies[accountId];
        if (msg.sender != policy.module || !s.rebalancers[msg.sender]) {
            revert IMarginEngine.RebalancerNotAllowed(accountId, msg.sender);
        }
        _checkPlan(policy, accountId, plan);
        uint256 ready = AccountLogic.rebalanceReadyAt(s, accountId);
        if (block.timestamp < ready) revert IMarginEngine.RebalanceCooldown(accountId, ready);
        s.lastRebalanceAt[accountId] = block.timestamp;

        AccountLogic.Ctx memory ctx = AccountLogic.newCtx(env);
        AccountLogic.pokeAccount(s, ctx, accountId);
        hBefore = AccountLogic.valuation(s, ctx, accountId).health;
        // Below 1 only a rescue from the reserve may act (a TOP_UP that lands at or above the liquidation target,
        // checked after); anything else belongs to the liquidator.
        bool rescue = hBefore < WAD;
        if (rescue && plan.action & C.TOP_UP == 0) revert IMarginEngine.AccountLiquidatable(accountId, hBefore);
        bool release = plan.action == C.RELEASE;
        // The owner's band: a module acts only below the trigger (TOP_UP/REDUCE) or above release (RELEASE),
        // so it cannot close a healthy account or turn a reserve into fees.
        if (release ? hBefore <= policy.releaseRatio : hBefore >= policy.triggerRatio) {
            revert IMarginEngine.RebalanceNotNeeded(accountId, hBefore);
        }

        for (uint256 i; i < plan.assets.length; ++i) {
            // The vault reverts if the reserve (or margin) is short: at most the account's own balance moves.
            if (release) {
                env.vault.engineMoveToReserve(accountId, plan.assets[i], plan.amounts[i]);
            } else {
                env.vault.engineMoveToMargin(accountId, plan.assets[i], plan.amounts[i]);
                // A topped-up asset may be new to the account; without a valid price it counts as nothing.
                AccountLogic.pokeCollateral(ctx, plan.assets[i]);
            }
        }
        if (plan.reduceFraction != 0) AccountLogic.closeFraction(s, ctx, accountId, plan.reduceFraction, true);
        if (plan.feeUsd != 0) AccountLogic.payFromAccount(s, env, accountId, plan.keeper, plan.feeUsd);
        AccountLogic.settle(s, env, accountId);

        IMarginEngine.AccountState memory st = AccountLogic.valuation(s, ctx, accountId);
        hAfter = st.health;
        _checkAfter(policy.targetRatio, accountId, release, hBefore, st);
        if (rescue) {
            // Measured as the liquidation it pre-empted would be: against the maintenance margin at the current σ.
            uint256 mmNow = AccountLogic.currentVolMaintenance(s, ctx, accountId);
            uint256 ratio = st.equity <= 0 ? 0 : uint256(st.equity).wDivDown(mmNow); // rounds down
            if (ratio < s.risk.liquidationTargetRatio) {
                revert IMarginEngine.RescueFallsShort(accountId, ratio, s.risk.liquidationTargetRatio);
            }
        }
        emit IMarginEngine.RebalanceApplied(accountId, msg.sender, plan.action, hBefore, hAfter, plan.feeUsd);
    }

    /// @dev The postconditions: equity >= 0 (with every position closed health reads as unbounded, and equity
    ///      must still cover what was paid out); health never lower for TOP_UP/REDUCE; for RELEASE health
    ///      >= target − RELEASE_HEALTH_OFFSET and equity >= IM.
    function _checkAfter(
        uint256 targetRatio,
        uint256 accountId,
        bool release,
        uint256 hBefore,
        IMarginEngine.AccountState memory st
    ) private pure {
        if (st.equity < 0) revert IMarginEngine.RebalanceLeavesDebt(accountId, st.equity);
        if (release) {
            uint256 minHealth = targetRatio - C.RELEASE_HEALTH_OFFSET;
            if (st.health < minHealth) revert IMarginEngine.RebalanceBelowTarget(accountId, st.health, minHealth);
            if (st.equity < int256(st.initialMargin)) {
                revert IMarginEngine.BelowInitialMargin(accountId, st.equity, st.initialMargin);
            }
        } else if (st.health < hBefore) {
            revert IMarginEngine.RebalanceLowersHealth(accountId, hBefore, st.health);
        }
    }

    /// @dev The plan's shape against the policy: allowed, well-formed actions; assets from the policy.
    function _checkPlan(
        IMarginEngine.RebalancePolicy storage policy,
        uint256 accountId,
        IMarginEngine.RebalancePlan calldata plan
    ) private view {
        uint8 action = plan.action;
        bool validAction = action == C.RELEASE || (action != 0 && action & ~(C.TOP_UP | C.REDUCE) == 0);
        if (!validAction || action & ~policy.actions != 0) {
            revert IMarginEngine.RebalanceActionNotAllowed(accountId, action);
        }
        bool moves = action & (C.TOP_UP | C.RELEASE) != 0;
        bool reduces = action & C.REDUCE != 0;
        if (
            plan.assets.length != plan.amounts.length || moves != (plan.assets.length != 0)
                || reduces != (plan.reduceFraction != 0) || plan.reduceFraction > WAD
                || (plan.feeUsd != 0 && plan.keeper == address(0))
        ) revert IMarginEngine.RebalancePlanInvalid(accountId);
        if (plan.feeUsd > policy.maxFeeUsd) revert IMarginEngine.RebalanceFeeAboveMax(plan.feeUsd, policy.maxFeeUsd);
        address[] storage allowed = policy.topUpAssets;
        for (uint256 i; i < plan.assets.length; ++i) {
            bool found;
            for (uint256 j; j < allowed.length && !found; ++j) {
                found = allowed[j] == plan.assets[i];
            }
            if (!found) revert IMarginEngine.RebalanceAssetNotInPolicy(accountId, plan.assets[i]);
        }
    }
}
