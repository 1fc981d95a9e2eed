// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {SignedMath} from "@openzeppelin/contracts/utils/math/SignedMath.sol";
import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";

import {IRebalancer} from "../interfaces/IRebalancer.sol";
import {IMarginEngine} from "../interfaces/IMarginEngine.sol";
import {IVault} from "../interfaces/IVault.sol";
import {IOracleRouter} from "../interfaces/IOracleRouter.sol";
import {WadMath} from "../libraries/WadMath.sol";
import {CloseMath} from "../libraries/CloseMath.sol";
import "../libraries/Constants.sol" as C;

/// @title Rebalancer
/// @notice Plans rebalances of opted-in accounts; the MarginEngine applies and polices them. See IRebalancer.
/// @dev `rebalance`, `rebalanceBatch`, `needsRebalance` and `checkUpkeep` share `_plan`, so a keeper's simulation
///      and the state change cannot disagree. `_plan` reads oracle views, which apply an unpoked round exactly as
///      `poke` would, so the plan sees the prices the engine's own poke in `applyRebalance` records.
contract Rebalancer is IRebalancer, Ownable2Step {
    using WadMath for uint256;

    uint256 private constant WAD = 1e18;

    IMarginEngine public immutable engine;
    IVault private immutable vault;
    IOracleRouter private immutable oracle;
    address private immutable settlementAsset;
    /// @dev WAD USD per settlement-token unit: fees are whole token units (the pool pays whole units).
    uint256 private immutable settlementScale;
    /// @inheritdoc IRebalancer
    address public immutable gasAsset;

    FeeParams private _fee;
    /// @inheritdoc IRebalancer
    uint256 public upkeepSize;
    /// @inheritdoc IRebalancer
    address public upkeepFeeRecipient;

    /// @dev One plan under construction (memory, so the planning steps stay within the stack).
    struct Draft {
        uint256 accountId;
        IMarginEngine.RebalancePolicy policy;
        IMarginEngine.AccountState state;
        uint256 closeFeeUsd;
        uint256 maintenanceNowUsd; // MM at the current volatility: what a rescue must reach the liquidation target of
        uint256 feeUsd;
        uint256 toppedUpUsd;
        uint256 reducedNotionalUsd;
        uint256 releasedUsd;
        uint256 count; // assets used so far
        address[] assets;
        uint256[] amounts;
    }

    constructor(IMarginEngine engine_, address gasAsset_, FeeParams memory fee_, uint256 upkeepSize_, address owner_)
        Ownable(owner_)
    {
        if (address(engine_) == address(0) || gasAsset_ == address(0)) revert ZeroAddress();
        engine = engine_;
        vault = engine_.vault();
        oracle = engine_.oracle();
        settlementAsset = engine_.settlementAsset();
        settlementScale = 10 ** (18 - vault.assetConfig(settlementAsset).decimals);
        gasAsset = gasAsset_;
        _setFeeParams(fee_);
        _setUpkeepSize(upkeepSize_);
    }

    // =================================================================== governance

    /// @inheritdoc IRebalancer
    function setFeeParams(FeeParams calldata params) external onlyOwner {
        _setFeeParams(params);
    }

    /// @inheritdoc IRebalancer
    function setUpkeepSize(uint256 size) external onlyOwner {
        _setUpkeepSize(size);
    }

    /// @inheritdoc IRebalancer
    function setUpkeepFeeRecipient(address recipient) external onlyOwner {
        upkeepFeeRecipient = recipient;
        emit UpkeepFeeRecipientSet(recipient);
    }

    function _setFeeParams(FeeParams memory p) private {
        if (p.baseFeeUsd > C.MAX_REBALANCE_FEE || p.gasUnits > C.MAX_REBALANCE_GAS_UNITS) {
            revert FeeParamsOutOfBounds(p.baseFeeUsd, p.gasUnits);
        }
        _fee = p;
        emit FeeParamsSet(p);
    }

    function _setUpkeepSize(uint256 size) private {
        if (size == 0 || size > C.MAX_UPKEEP_SIZE) revert UpkeepSizeOutOfBounds(size, C.MAX_UPKEEP_SIZE);
        upkeepSize = size;
        emit UpkeepSizeSet(size);
    }

    // =================================================================== rebalancing

    /// @inheritdoc IRebalancer
    function rebalance(uint256 accountId) external returns (uint8 action, uint256 feeUsd) {
        (Status status, Draft memory d, IMarginEngine.RebalancePlan memory plan) = _plan(accountId, msg.sender);
        if (status != Status.Ready) _revertFor(status, d);
        (uint256 hBefore, uint256 hAfter) = engine.applyRebalance(accountId, plan);
        _emitRebalanced(accountId, plan, d, hBefore, hAfter);
        return (plan.action, plan.feeUsd);
    }

    /// @inheritdoc IRebalancer
    function rebalanceBatch(uint256[] calldata accountIds) external returns (uint256 rebalanced) {
        return _batch(accountIds, msg.sender);
    }

    /// @inheritdoc IRebalancer
    function needsRebalance(uint256 accountId)
        external
        view
        returns (bool needed, Status status, IMarginEngine.RebalancePlan memory plan)
    {
        (status, , plan) = _plan(accountId, msg.sender);
        needed = status == Status.Ready;
    }

    /// @inheritdoc IRebalancer
    function keeperFee(uint256 maxFeeUsd) public view returns (uint256 fee) {
        FeeParams memory p = _fee;
        fee = p.baseFeeUsd;
        (bool ok, uint256 ethPx) = oracle.tryPrice(gasAsset);
        // Gas cost in wei × USD per ETH, rounded down (the account pays no more than the gas is worth);
        // with no valid gas-asset price the keeper gets the flat part only, and the account stays protected.
        if (ok) fee += (uint256(p.gasUnits) * block.basefee).wMulDown(ethPx);
        if (fee > maxFeeUsd) fee = maxFeeUsd;
        // Whole settlement-token units, rounded down: the pool pays the keeper exactly what the account owes.
        fee -= fee % settlementScale;
    }

    /// @inheritdoc IRebalancer
    function feeParams() external view returns (FeeParams memory) {
        return _fee;
    }

    // =================================================================== Chainlink Automation

    /// @notice Scans account ids [start, start + count) (checkData = abi.encode(start, count); empty = every
    ///         account, at most MAX_UPKEEP_SCAN) and returns up to `upkeepSize` that need a rebalance,
    ///         spending at most UPKEEP_CHECK_GAS_BUDGET (accounts without positions cost one read each).
    function checkUpkeep(bytes calldata checkData)
        external
        view
        returns (bool upkeepNeeded, bytes memory performData)
    {
        (uint256 start, uint256 count) = checkData.length == 0 ? (1, C.MAX_UPKEEP_SCAN) : abi.decode(checkData, (uint256, uint256));
        if (start == 0) start = 1;
        uint256 last = vault.accountCount();
        if (start > last) return (false, abi.encode(new uint256[](0))); // also keeps start + count from overflowing
        uint256 end = Math.min(start + Math.min(count, C.MAX_UPKEEP_SCAN), last + 1);
        uint256[] memory ids = new uint256[](upkeepSize);
        uint256 n;
        // Stops at a gas budget (and before running out of gas): what was found so far is still returned.
        uint256 gasStart = gasleft();
        for (uint256 id = start; id < end && n < ids.length; ++id) {
            if (gasStart - gasleft() > C.UPKEEP_CHECK_GAS_BUDGET || gasleft() < C.UPKEEP_CHECK_GAS_RESERVE) break;
            // One read first: an account without positions never needs a rebalance (RELEASE needs open
            // positions too). `_plan` then stops at its opt-in and cooldown gate before any valuation.
            if (engine.positionMask(id) == 0) continue;
            (Status status,,) = _plan(id, msg.sender);
            if (status == Status.Ready) ids[n++] = id;
        }
        assembly ("memory-safe") {
            mstore(ids, n)
        }
        return (n != 0, abi.encode(ids));
    }

    /// @notice Rebalances the accounts `checkUpkeep` found, re-validating each (state may have changed).
    function performUpkeep(bytes calldata performData) external {
        // Automation calls through a forwarder that cannot move tokens: fees go to the owner's recipient.
        address recipient = upkeepFeeRecipient;
        _batch(abi.decode(performData, (uint256[])), recipient == address(0) ? msg.sender : recipient);
    }

    // =================================================================== internals

    function _batch(uint256[] memory accountIds, address keeper) private returns (uint256 rebalanced) {
        for (uint256 i; i < accountIds.length; ++i) {
            uint256 id = accountIds[i];
            (Status status, Draft memory d, IMarginEngine.RebalancePlan memory plan) = _plan(id, keeper);
            if (status != Status.Ready) {
                emit RebalanceSkipped(id, status);
                continue;
            }
            try engine.applyRebalance(id, plan) returns (uint256 hBefore, uint256 hAfter) {
                _emitRebalanced(id, plan, d, hBefore, hAfter);
                ++rebalanced;
            } catch {
                emit RebalanceSkipped(id, Status.Rejected);
            }
        }
    }

    /// @dev Opt-in and cooldown (the engine's own `rebalanceReadyAt`, at most one rebalance per account per
    ///      block), before any oracle is touched: the keeper that loses a race for an account pays for these
    ///      reads only.
    function _gate(uint256 accountId, IMarginEngine.RebalancePolicy memory policy) private view returns (Status) {
        if (policy.module != address(this)) return Status.NotOptedIn;
        if (block.timestamp < engine.rebalanceReadyAt(accountId)) return Status.Cooldown;
        return Status.Ready;
    }

    /// @dev The one calculation behind `rebalance`, `rebalanceBatch`, `needsRebalance` and `checkUpkeep`
    ///      (README "Rebalancing", steps 2-5).
    function _plan(uint256 accountId, address keeper)
        private
        view
        returns (Status status, Draft memory d, IMarginEngine.RebalancePlan memory plan)
    {
        d.accountId = accountId;
        d.policy = engine.rebalancePolicy(accountId);
        status = _gate(accountId, d.policy);
        if (status != Status.Ready) return (status, d, plan);
        try engine.rebalanceInputs(accountId) returns (
            IMarginEngine.AccountState memory st, uint256 closeFee, uint256 maintenanceNow
        ) {
            d.state = st;
            d.closeFeeUsd = closeFee;
            d.maintenanceNowUsd = maintenanceNow;
        } catch {
            return (Status.OracleUnhealthy, d, plan);
        }
        uint256 h = d.state.health;
        // Below 1 only a rescue may act: TOP_UP allowed and the reserve lifting the account to the liquidation
        // target (checked on the plan below, and again by the engine).
        if (h < WAD && d.policy.actions & C.TOP_UP == 0) return (Status.Liquidatable, d, plan);
        bool low = h < d.policy.triggerRatio;
        // RELEASE only while positions are open: idle margin of an account without positions is the owner's
        // to move (a fee for it would buy no protection).
        bool high = d.policy.releaseRatio != 0 && h > d.policy.releaseRatio && d.policy.actions & C.RELEASE != 0
            && d.state.maintenanceMargin != 0;
        if (!low && !high) return (Status.InBand, d, plan);

        d.feeUsd = h < WAD ? _rescueFee(d.policy.maxFeeUsd) : keeperFee(d.policy.maxFeeUsd);
        d.assets = new address[](d.policy.topUpAssets.length);
        d.amounts = new uint256[](d.policy.topUpAssets.length);
        plan.action = low ? _planRestore(d, plan) : _planRelease(d);
        if (h < WAD && (d.toppedUpUsd == 0 || !_rescues(d))) return (Status.Liquidatable, d, plan);
        if (plan.action == 0) return (Status.NoAction, d, plan);

        address[] memory assets = d.assets;
        uint256[] memory amounts = d.amounts;
        uint256 n = d.count;
        assembly ("memory-safe") {
            mstore(assets, n)
            mstore(amounts, n)
        }
        plan.assets = assets;
        plan.amounts = amounts;
        plan.feeUsd = d.feeUsd;
        plan.keeper = keeper;
        return (Status.Ready, d, plan);
    }

    /// @dev h < trigger. TOP_UP, in the owner's order, the least reserve value that brings health to target
    ///      counting the fee as paid (ΔC = target·MM − (E − fee)); if still short and allowed, REDUCE every
    ///      position by CloseMath's least fraction, with E' = E − fee + ΔC topped up and the trading fee of
    ///      closing everything (φN) as the close cost. Returns the action bits (0 = nothing useful).
    function _planRestore(Draft memory d, IMarginEngine.RebalancePlan memory plan) private view returns (uint8 action) {
        // Requirement rounded up, equity (after the fee) as is: the target is reached, not approached. A rescue
        // (health < 1) also does what the liquidation it pre-empts would, which the engine requires of it: the
        // liquidation target against MM at the current volatility, with a settlement unit to spare (rounding).
        uint256 target = d.policy.targetRatio;
        int256 required;
        if (d.state.health < WAD) {
            target = Math.max(target, _liquidationTarget());
            required = _rescueRequired(d);
        }
        required = SignedMath.max(required, int256(d.state.maintenanceMargin.wMulUp(target)));
        int256 equity = d.state.equity - int256(d.feeUsd);
        uint256 added;
        if (d.policy.actions & C.TOP_UP != 0 && required > equity) {
            added = _planTopUp(d, uint256(required - equity));
            if (added != 0) action = C.TOP_UP;
        }
        equity += int256(added);
        if (required > equity && d.policy.actions & C.REDUCE != 0) {
            // One settlement-token unit less equity: realised PnL settles against USDC margin rounded up to a
            // whole unit (against the account), and the plan must still reach the target after that.
            uint256 f = CloseMath.leastCloseFraction(
                target,
                d.state.maintenanceMargin,
                engine.riskParams().keeperReward,
                equity - int256(settlementScale),
                d.closeFeeUsd
            );
            if (f == WAD) {
                // Everything closes: the fee takes at most what is left after the close (less a unit of
                // rounding), never more, so the pool is never left owed by an empty account.
                int256 left = equity + int256(d.feeUsd) - int256(d.closeFeeUsd) - int256(settlementScale);
                uint256 cap = left > 0 ? uint256(left) : 0;
                if (d.feeUsd > cap) d.feeUsd = cap - (cap % settlementScale);
            }
            plan.reduceFraction = f;
            d.reducedNotionalUsd = d.state.notional.wMulUp(f);
            return action | C.REDUCE;
        }
        // A top-up alone must more than pay its own fee (plus a token unit of settlement rounding), else the
        // engine's health-never-falls rule would refuse it.
        if (action != 0 && added <= d.feeUsd + settlementScale) return 0;
    }

    /// @dev Reserve → margin in the policy's order until `needUsd` of collateral value is added. Each amount
    ///      is rounded up (against the account: the target is reached); the value counted is the engine's
    ///      own, price then haircut rounded down. Returns the value added.
    function _planTopUp(Draft memory d, uint256 needUsd) private view returns (uint256 added) {
        for (uint256 i; i < d.policy.topUpAssets.length && added < needUsd; ++i) {
            address asset = d.policy.topUpAssets[i];
            uint256 available = vault.reserveOf(d.accountId, asset);
            if (available == 0) continue;
            (bool ok, uint256 px, IVault.AssetConfig memory cfg) = _priced(asset);
            if (!ok || cfg.haircut == 0) continue;
            uint256 amount = WadMath.toAmountUp((needUsd - added).wDivUp(cfg.haircut), px, cfg.decimals);
            if (amount > available) amount = available;
            uint256 value = WadMath.toValueDown(amount, px, cfg.decimals).wMulDown(cfg.haircut);
            if (value == 0) continue;
            added += value;
            d.assets[d.count] = asset;
            d.amounts[d.count] = amount;
            ++d.count;
        }
        d.toppedUpUsd = added;
    }

    /// @dev h > release. Margin → reserve in the policy's order down to max(target·MM, IM) with the fee
    ///      counted as paid and one settlement unit kept (the settle after the fee may take a sub-unit positive
    ///      settlement balance with it). Each amount rounds down and the value it removes is bounded above
    ///      (price and haircut rounded up), so the account never lands below target or IM. Nothing useful
    ///      unless the release is worth more than the fee.
    function _planRelease(Draft memory d) private view returns (uint8) {
        uint256 floorUsd =
            Math.max(d.state.maintenanceMargin.wMulUp(d.policy.targetRatio), d.state.initialMargin) + settlementScale;
        int256 excessSigned = d.state.equity - int256(d.feeUsd) - int256(floorUsd);
        if (excessSigned <= 0) return 0;
        uint256 excess = uint256(excessSigned);
        uint256 released;
        for (uint256 i; i < d.policy.topUpAssets.length && excess != 0; ++i) {
            address asset = d.policy.topUpAssets[i];
            uint256 margin = vault.marginOf(d.accountId, asset);
            if (margin == 0) continue;
            (bool ok, uint256 px, IVault.AssetConfig memory cfg) = _priced(asset);
            if (!ok || cfg.haircut == 0) continue;
            uint256 amount = WadMath.toAmountDown(excess.wDivDown(cfg.haircut), px, cfg.decimals);
            if (amount > margin) amount = margin;
            if (amount == 0) continue;
            uint256 removed = WadMath.toValueUp(amount, px, cfg.decimals).wMulUp(cfg.haircut);
            excess = removed >= excess ? 0 : excess - removed;
            released += removed;
            d.assets[d.count] = asset;
            d.amounts[d.count] = amount;
            ++d.count;
        }
        if (released <= d.feeUsd) return 0;
        d.releasedUsd = released;
        return C.RELEASE;
    }

    /// @dev A rescue pays its keeper at least what the liquidation it replaces would (the flat keeper reward,
    ///      within the owner's cap; whole token units), so a keeper always prefers the rescue or is indifferent.
    function _rescueFee(uint256 maxFeeUsd) private view returns (uint256 fee) {
        fee = keeperFee(maxFeeUsd);
        uint256 reward = Math.min(engine.riskParams().keeperReward, maxFeeUsd);
        reward -= reward % settlementScale;
        if (fee < reward) fee = reward;
    }

    /// @dev A rescue's top-up alone (after the fee) lifts the account to the liquidation target against MM at the
    ///      current volatility: the engine's `canRescue` rule, on the plan's own amounts.
    function _rescues(Draft memory d) private view returns (bool) {
        return d.state.equity - int256(d.feeUsd) + int256(d.toppedUpUsd) >= _rescueRequired(d);
    }

    /// @dev Equity a rescue must leave: liquidationTarget × MM at the current volatility, one settlement unit more.
    function _rescueRequired(Draft memory d) private view returns (int256) {
        return int256(d.maintenanceNowUsd.wMulUp(_liquidationTarget()) + settlementScale);
    }

    function _liquidationTarget() private view returns (uint256) {
        return engine.riskParams().liquidationTargetRatio;
    }

    function _priced(address asset) private view returns (bool ok, uint256 px, IVault.AssetConfig memory cfg) {
        cfg = vault.assetConfig(asset);
        if (asset == settlementAsset) return (true, WAD, cfg);
        (ok, px) = oracle.tryPrice(asset);
    }

    function _emitRebalanced(
        uint256 accountId,
        IMarginEngine.RebalancePlan memory plan,
        Draft memory d,
        uint256 hBefore,
        uint256 hAfter
    ) private {
        emit Rebalanced(
            accountId,
            plan.action,
            hBefore,
            hAfter,
            d.toppedUpUsd,
            d.reducedNotionalUsd,
            d.releasedUsd,
            plan.feeUsd,
            plan.keeper
        );
    }

    function _revertFor(Status status, Draft memory d) private {
        if (status == Status.NotOptedIn) revert NotOptedIn(d.accountId);
        if (status == Status.Liquidatable) revert Liquidatable(d.accountId, d.state.health);
        if (status == Status.OracleUnhealthy) {
            // The engine's poke names the asset: it reverts `OracleUnhealthy(asset)` on the first invalid one.
            engine.pokeAccount(d.accountId);
            revert OracleUnhealthy(address(0));
        }
        revert NothingToRebalance();
    }
}
