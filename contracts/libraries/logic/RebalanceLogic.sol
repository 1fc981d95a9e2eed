// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {IMarginEngine} from "../../interfaces/IMarginEngine.sol";
import {IRebalancer} from "../../interfaces/IRebalancer.sol";
import {IVault} from "../../interfaces/IVault.sol";
import {WadMath} from "../WadMath.sol";
import {AccountLogic} from "./AccountLogic.sol";
import {PlanLogic} from "./PlanLogic.sol";
import "../Constants.sol" as C;

/// @title RebalanceLogic
/// @notice The engine's built-in rebalancing (run by delegatecall from the MarginEngine and its extension): policy
///         validation, `rebalance`, `rebalanceBatch`, `needsRebalance` and `checkUpkeep` (IRebalancer).
/// @dev A rebalance pokes the prices the account needs, values it once, plans on that valuation (PlanLogic) and
///      applies the plan; the state after it checks the postconditions (defence in depth: the plan meets them by
///      construction) and gives the health the event reports. After a REDUCE that state is a second valuation;
///      after a TOP_UP or RELEASE alone it is the first one with the moved balances' collateral re-summed.
library RebalanceLogic {
    using SafeCast for uint256;
    using WadMath for uint256;

    uint256 private constant WAD = 1e18;

    // =================================================================== policy

    /// @dev See `IMarginEngine.setRebalancePolicy`. Each broken rule has its own error.
    function setPolicy(
        AccountLogic.Storage storage s,
        uint256 accountId,
        IMarginEngine.RebalancePolicy calldata p
    ) external {
        if (p.actions == 0) {
            delete s.policies[accountId];
            // The event carries the policy as stored: cleared.
            IMarginEngine.RebalancePolicy memory cleared;
            emit IMarginEngine.RebalancePolicySet(accountId, cleared);
            return;
        }
        _checkRatios(p.triggerRatio, p.targetRatio, p.releaseRatio);
        // REDUCE_FIRST orders a REDUCE: alone it means nothing
        if (p.actions & ~C.ALL_ACTIONS != 0 || (p.actions & C.REDUCE_FIRST != 0 && p.actions & C.REDUCE == 0)) {
            revert IMarginEngine.PolicyUnknownActions(p.actions);
        }
        if (p.actions & C.RELEASE != 0 && p.releaseRatio == 0) revert IMarginEngine.PolicyReleaseRatioMissing();
        if (p.actions & (C.TOP_UP | C.RELEASE) != 0 && p.topUpAssets.length == 0) {
            revert IMarginEngine.PolicyTopUpAssetsMissing();
        }
        if (p.topUpAssets.length > C.MAX_POLICY_ASSETS) {
            revert IMarginEngine.PolicyTooManyAssets(p.topUpAssets.length, C.MAX_POLICY_ASSETS);
        }
        uint256 indices = _assetIndices(s, p.topUpAssets);
        if (p.cooldown > C.MAX_REBALANCE_COOLDOWN) {
            revert IMarginEngine.PolicyCooldownTooLong(p.cooldown, C.MAX_REBALANCE_COOLDOWN);
        }
        if (p.maxFeeUsd > C.MAX_REBALANCE_FEE) revert IMarginEngine.PolicyFeeTooHigh(p.maxFeeUsd, C.MAX_REBALANCE_FEE);
        // Every narrowing below is exact, by the checks above (AccountLogic.PolicySlot).
        s.policies[accountId] = AccountLogic.PolicySlot({
            actions: p.actions,
            cooldown: uint24(p.cooldown), // <= MAX_REBALANCE_COOLDOWN < 2^24
            triggerPpm: uint24(p.triggerRatio / C.POLICY_RATIO_UNIT), // trigger < target <= 10e18: < 2^24 millionths
            targetPpm: uint24(p.targetRatio / C.POLICY_RATIO_UNIT),
            releasePpm: uint24(p.releaseRatio / C.POLICY_RATIO_UNIT), // <= MAX_RELEASE_RATIO = 16e18
            maxFeeUsd: uint72(p.maxFeeUsd), // <= MAX_REBALANCE_FEE = 1e21 < 2^72
            ownerActedAt: uint40(block.timestamp), // a new policy REDUCEs only on a later round (README "Orders")
            assetCount: uint8(p.topUpAssets.length), // <= MAX_POLICY_ASSETS, checked above
            assetIndices: uint32(indices) // MAX_POLICY_ASSETS = 8 indices of 4 bits
        });
        emit IMarginEngine.RebalancePolicySet(accountId, p);
    }

    /// @dev The ratio rules, in order: trigger > 1, the bands, target <= 10, release <= 16, whole millionths.
    function _checkRatios(uint256 trigger, uint256 target, uint256 release) private pure {
        if (trigger <= WAD) revert IMarginEngine.PolicyTriggerTooLow(trigger);
        if (target < trigger + C.MIN_REBALANCE_BAND) {
            revert IMarginEngine.PolicyBandTooNarrow(trigger, target, C.MIN_REBALANCE_BAND);
        }
        if (target > C.MAX_REBALANCE_TARGET) revert IMarginEngine.PolicyTargetTooHigh(target, C.MAX_REBALANCE_TARGET);
        if (release != 0 && release < target + C.MIN_REBALANCE_BAND) {
            revert IMarginEngine.PolicyBandTooNarrow(target, release, C.MIN_REBALANCE_BAND);
        }
        if (release > C.MAX_RELEASE_RATIO) revert IMarginEngine.PolicyReleaseTooHigh(release, C.MAX_RELEASE_RATIO);
        // The policy slot keeps the ratios in millionths: refuse what it could not keep exactly (never round).
        _requireWholeMillionths(trigger);
        _requireWholeMillionths(target);
        _requireWholeMillionths(release);
    }

    function _requireWholeMillionths(uint256 ratio) private pure {
        if (ratio % C.POLICY_RATIO_UNIT != 0) revert IMarginEngine.PolicyRatioPrecision(ratio, C.POLICY_RATIO_UNIT);
    }

    /// @dev The policy's top-up assets as packed listing indices (AccountLogic.PolicySlot): the k-th in bits [4k, 4k + 4).
    ///      Reverts `PolicyAssetNotListed` / `PolicyDuplicateAsset`; the caller has checked at most MAX_POLICY_ASSETS.
    function _assetIndices(AccountLogic.Storage storage s, address[] calldata assets) private view returns (uint256 indices) {
        for (uint256 i; i < assets.length; ++i) {
            address asset = assets[i];
            uint256 slot = s.assetSlot[asset];
            if (slot == 0) revert IMarginEngine.PolicyAssetNotListed(asset);
            for (uint256 j; j < i; ++j) {
                if (assets[j] == asset) revert IMarginEngine.PolicyDuplicateAsset(asset);
            }
            indices |= (slot - 1) << (4 * i); // index < MAX_ASSETS = 16: 4 bits; i < MAX_POLICY_ASSETS: 32 bits in all
        }
    }

    // =================================================================== rebalancing

    /// @dev See `IRebalancer.rebalance`; `keeper` is credited the fee. The engine has passed `PlanLogic.gate` (opt-in,
    ///      cooldown) before calling.
    function rebalance(AccountLogic.Storage storage s, AccountLogic.Env memory env, uint256 accountId, address keeper)
        external
        returns (uint8 action, uint256 feeUsd)
    {
        AccountLogic.Ctx memory ctx = AccountLogic.newCtx(env);
        address unpriced = PlanLogic.pokePrices(s, ctx, accountId);
        if (unpriced != address(0)) revert IMarginEngine.OracleUnhealthy(unpriced);
        (IRebalancer.Status status, PlanLogic.Draft memory d) = PlanLogic.plan(s, ctx, accountId);
        if (status != IRebalancer.Status.Ready) _revertFor(status, accountId, d.state.health);
        _apply(s, ctx, d, keeper);
        return (d.action, d.feeUsd);
    }

    /// @dev See `IRebalancer.rebalanceBatch`: one price cache for the whole batch (each feed read once).
    function rebalanceBatch(
        AccountLogic.Storage storage s,
        AccountLogic.Env memory env,
        uint256[] memory accountIds,
        address keeper
    ) external returns (uint256 rebalanced) {
        AccountLogic.Ctx memory ctx = AccountLogic.newCtx(env);
        uint256 freeMemory = _freeMemoryPointer();
        for (uint256 i; i < accountIds.length; ++i) {
            // Nothing an account's iteration allocates outlives it (the price cache was allocated above and is
            // written in place): giving the memory back keeps each account's cost flat instead of growing with
            // the memory the accounts before it used (memory expansion is quadratic).
            _setFreeMemoryPointer(freeMemory);
            uint256 id = accountIds[i];
            IRebalancer.Status status = PlanLogic.gate(s, id);
            if (status == IRebalancer.Status.Ready && PlanLogic.pokePrices(s, ctx, id) != address(0)) {
                status = IRebalancer.Status.OracleUnhealthy;
            }
            PlanLogic.Draft memory d;
            if (status == IRebalancer.Status.Ready) (status, d) = PlanLogic.plan(s, ctx, id);
            if (status != IRebalancer.Status.Ready) {
                emit IRebalancer.RebalanceSkipped(id, status);
                continue;
            }
            int256 settlementBefore = s.accounts[id].settlement;
            _apply(s, ctx, d, keeper);
            AccountLogic.trackDebt(s, id, settlementBefore);
            ++rebalanced;
        }
    }

    /// @dev See `IRebalancer.needsRebalance`.
    function needsRebalance(AccountLogic.Storage storage s, AccountLogic.Env memory env, uint256 accountId, address keeper)
        external
        view
        returns (bool needed, IRebalancer.Status status, IMarginEngine.RebalancePlan memory plan)
    {
        PlanLogic.Draft memory d;
        (status, d) = _viewPlan(s, AccountLogic.newCtx(env), accountId);
        if (status == IRebalancer.Status.Ready) plan = PlanLogic.toPlan(d, keeper);
        needed = status == IRebalancer.Status.Ready;
    }

    /// @dev See `IRebalancer.checkUpkeep`.
    function checkUpkeep(AccountLogic.Storage storage s, AccountLogic.Env memory env, bytes calldata checkData)
        external
        view
        returns (bool upkeepNeeded, bytes memory performData)
    {
        (uint256 start, uint256 count) =
            checkData.length == 0 ? (1, C.MAX_UPKEEP_SCAN) : abi.decode(checkData, (uint256, uint256));
        if (start == 0) start = 1;
        uint256 last = s.accountCount;
        if (start > last) return (false, abi.encode(new uint256[](0))); // also keeps start + count from overflowing
        uint256 end = Math.min(start + Math.min(count, C.MAX_UPKEEP_SCAN), last + 1);
        uint256[] memory ids = _scan(s, AccountLogic.newCtx(env), start, end);
        return (ids.length != 0, abi.encode(ids));
    }

    /// @dev Up to `upkeepSize` accounts of ids [start, end) that need a rebalance. Stops at a gas budget (and
    ///      before running out of gas): what was found so far is still returned.
    function _scan(AccountLogic.Storage storage s, AccountLogic.Ctx memory ctx, uint256 start, uint256 end)
        private
        view
        returns (uint256[] memory ids)
    {
        ids = new uint256[](s.upkeepSize);
        uint256 n;
        uint256 gasStart = gasleft();
        uint256 freeMemory = _freeMemoryPointer();
        for (uint256 id = start; id < end && n < ids.length; ++id) {
            _setFreeMemoryPointer(freeMemory); // as in rebalanceBatch: an iteration's memory dies with it
            if (gasStart - gasleft() > C.UPKEEP_CHECK_GAS_BUDGET || gasleft() < C.UPKEEP_CHECK_GAS_RESERVE) break;
            // One read first: an account without positions never needs a rebalance (RELEASE needs open
            // positions too). The plan then stops at its opt-in and cooldown gate before any valuation.
            if (s.accounts[id].positionMask == 0) continue;
            (IRebalancer.Status status,) = _viewPlan(s, ctx, id);
            if (status == IRebalancer.Status.Ready) ids[n++] = id;
        }
        assembly ("memory-safe") {
            mstore(ids, n)
        }
    }

    /// @dev See `IRebalancer.keeperFee`: the gas asset's price through the view door.
    function keeperFee(AccountLogic.Storage storage s, AccountLogic.Env memory env, uint256 maxFeeUsd)
        external
        view
        returns (uint256)
    {
        AccountLogic.Ctx memory ctx = AccountLogic.newCtx(env);
        AccountLogic.viewCollateral(ctx, env.gasAsset);
        return PlanLogic.keeperFee(s, ctx, maxFeeUsd);
    }

    // =================================================================== internals

    /// @dev The plan through the view door (`needsRebalance`, `checkUpkeep`): the same gate, prices and plan as
    ///      `rebalance`.
    function _viewPlan(AccountLogic.Storage storage s, AccountLogic.Ctx memory ctx, uint256 accountId)
        private
        view
        returns (IRebalancer.Status status, PlanLogic.Draft memory d)
    {
        status = PlanLogic.gate(s, accountId);
        if (status != IRebalancer.Status.Ready) return (status, d);
        if (PlanLogic.viewPrices(s, ctx, accountId) != address(0)) return (IRebalancer.Status.OracleUnhealthy, d);
        return PlanLogic.plan(s, ctx, accountId);
    }

    /// @dev Applies a Ready plan: reserve↔margin moves (`moveBalance` reverts if a balance is short: at most the
    ///      account's own balances move), the REDUCE at the trading fee, the keeper's fee (credited), settlement;
    ///      then the postconditions on the state after it (see the library note), and the event.
    function _apply(AccountLogic.Storage storage s, AccountLogic.Ctx memory ctx, PlanLogic.Draft memory d, address keeper)
        private
    {
        uint256 id = d.accountId;
        s.accounts[id].lastRebalanceAt = uint64(block.timestamp);
        bool release = d.action == C.RELEASE;
        // Listing bits of every margin balance the plan can change: its assets, and the settlement asset (settle).
        // (Only a TOP_UP or RELEASE alone uses them: after a REDUCE the state is a full valuation.)
        uint256 moved = 1 << AccountLogic.SETTLEMENT_INDEX;
        uint256 movedBefore;
        if (d.reduceFraction == 0) {
            for (uint256 i; i < d.assets.length; ++i) {
                moved |= 1 << AccountLogic.packedIndex(d.indices, i);
            }
            movedBefore = AccountLogic.collateralIn(s, ctx, id, moved);
        }
        for (uint256 i; i < d.assets.length; ++i) {
            address asset = d.assets[i];
            uint256 amount = d.amounts[i];
            AccountLogic.moveBalance(s, id, asset, AccountLogic.packedIndex(d.indices, i), amount, !release);
            if (release) emit IVault.MarginReleased(id, asset, amount);
            else emit IVault.MarginPosted(id, asset, amount);
        }
        if (d.reduceFraction != 0) AccountLogic.closeFraction(s, ctx, id, d.reduceFraction, true);
        if (d.feeUsd != 0) _payFee(s, ctx.env, id, d.feeUsd, keeper);
        AccountLogic.settle(s, ctx.env, id);

        IMarginEngine.AccountState memory st = _stateAfter(s, ctx, d, moved, movedBefore);
        _checkAfter(s, ctx, d, st);
        emit IRebalancer.Rebalanced(
            id,
            d.action,
            d.state.health,
            st.health,
            d.toppedUpUsd,
            d.reducedNotionalUsd,
            d.releasedUsd,
            d.feeUsd,
            keeper
        );
    }

    /// @dev The keeper's fee, whole settlement units (the plan rounds it so), credited to `keeper`. With S = 0 and the
    ///      account's settlement-asset margin covering it, paid straight from that margin into the pool's balance
    ///      (where credited rewards are held): exactly the end state of charging S and settling it, without the round
    ///      trip. Otherwise charged to S, which the settle after it collects as far as margin allows (a sub-unit
    ///      positive S is then taken with the fee, rounding for the protocol, as before).
    function _payFee(AccountLogic.Storage storage s, AccountLogic.Env memory env, uint256 id, uint256 feeUsd, address keeper)
        private
    {
        uint256 amount = feeUsd / env.settlementScale; // exact: feeUsd is whole units
        if (s.accounts[id].settlement == 0 && s.balances[id][env.settlementAsset].margin >= amount) {
            AccountLogic.takeMargin(s, id, env.settlementAsset, AccountLogic.SETTLEMENT_INDEX, amount);
            s.pool.balance += uint128(amount); // checked: the pool's balance fits 128 bits
            emit IVault.MarginDebited(id, env.settlementAsset, env.pool, amount);
        } else {
            AccountLogic.changeSettlement(s, id, -feeUsd.toInt256());
        }
        AccountLogic.creditKeeper(s, env, keeper, feeUsd);
    }

    /// @dev The account's valuation after the plan was applied. After a REDUCE, a valuation. After a TOP_UP or RELEASE
    ///      alone, positions and prices are as planned, so PnL, notional and both requirements are the plan's
    ///      valuation's; only the collateral terms of the balances in `moved` (worth `movedBefore` before) and S
    ///      changed. The result is the valuation's to the wei (the collateral sum is per asset) without re-valuing
    ///      positions.
    function _stateAfter(
        AccountLogic.Storage storage s,
        AccountLogic.Ctx memory ctx,
        PlanLogic.Draft memory d,
        uint256 moved,
        uint256 movedBefore
    ) private view returns (IMarginEngine.AccountState memory st) {
        uint256 id = d.accountId;
        // After a REDUCE the checks read equity and health only (the initial margin is RELEASE's, never combined).
        if (d.reduceFraction != 0) return AccountLogic.valuation(s, ctx, id, false);
        st = IMarginEngine.AccountState({
            collateral: d.state.collateral - movedBefore + AccountLogic.collateralIn(s, ctx, id, moved),
            settlement: s.accounts[id].settlement,
            unrealisedPnl: d.state.unrealisedPnl,
            equity: 0,
            notional: d.state.notional,
            maintenanceMargin: d.state.maintenanceMargin,
            initialMargin: d.state.initialMargin,
            health: 0
        });
        AccountLogic.setHealth(st);
    }

    /// @dev The postconditions: equity >= 0 (with every position closed health reads as unbounded, and equity
    ///      must still cover what was paid out); health never lower for TOP_UP/REDUCE; for RELEASE health
    ///      >= target − RELEASE_HEALTH_OFFSET and equity >= IM; a rescue (health < 1 before) at or above the
    ///      liquidation target against the maintenance margin at the current volatility, as the liquidation it
    ///      pre-empted would be measured.
    function _checkAfter(
        AccountLogic.Storage storage s,
        AccountLogic.Ctx memory ctx,
        PlanLogic.Draft memory d,
        IMarginEngine.AccountState memory st
    ) private view {
        uint256 id = d.accountId;
        uint256 hBefore = d.state.health;
        if (st.equity < 0) revert IMarginEngine.RebalanceLeavesDebt(id, st.equity);
        if (d.action == C.RELEASE) {
            uint256 minHealth = d.policy.targetRatio - C.RELEASE_HEALTH_OFFSET;
            if (st.health < minHealth) revert IMarginEngine.RebalanceBelowTarget(id, st.health, minHealth);
            if (st.equity < int256(st.initialMargin)) {
                revert IMarginEngine.BelowInitialMargin(id, st.equity, st.initialMargin);
            }
        } else if (st.health < hBefore) {
            revert IMarginEngine.RebalanceLowersHealth(id, hBefore, st.health);
        }
        if (hBefore < WAD) {
            uint256 mmNow = AccountLogic.currentVolMaintenance(s, ctx, id);
            uint256 ratio = st.equity <= 0 ? 0 : uint256(st.equity).wDivDown(mmNow); // rounds down
            if (ratio < s.risk.liquidationTargetRatio) {
                revert IMarginEngine.RescueFallsShort(id, ratio, s.risk.liquidationTargetRatio);
            }
        }
    }

    function _freeMemoryPointer() private pure returns (uint256 ptr) {
        assembly ("memory-safe") {
            ptr := mload(0x40)
        }
    }

    function _setFreeMemoryPointer(uint256 ptr) private pure {
        assembly ("memory-safe") {
            mstore(0x40, ptr)
        }
    }

    /// @dev A plan that is not Ready (the engine's gate already refused NotOptedIn and Cooldown): Liquidatable, or
    ///      InBand / NoAction as NothingToRebalance.
    function _revertFor(IRebalancer.Status status, uint256 accountId, uint256 health) private pure {
        if (status == IRebalancer.Status.Liquidatable) revert IRebalancer.Liquidatable(accountId, health);
        revert IRebalancer.NothingToRebalance();
    }
}
