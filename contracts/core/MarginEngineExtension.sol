// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

import {IMarginEngine} from "../interfaces/IMarginEngine.sol";
import {IRebalancer} from "../interfaces/IRebalancer.sol";
import {IOracleRouter} from "../interfaces/IOracleRouter.sol";
import {ILiquidityPool} from "../interfaces/ILiquidityPool.sol";
import {WadMath} from "../libraries/WadMath.sol";
import {AccountLogic} from "../libraries/logic/AccountLogic.sol";
import {LiquidationLogic} from "../libraries/logic/LiquidationLogic.sol";
import {RebalanceLogic} from "../libraries/logic/RebalanceLogic.sol";
import {GovernanceLogic} from "../libraries/logic/GovernanceLogic.sol";
import {EngineBase} from "./EngineBase.sol";

/// @title MarginEngineExtension
/// @notice The MarginEngine's cold functions: governance, policies, views, `needsRebalance`, `checkUpkeep`; what it
///         does not serve either, it passes to the custody facet. Only ever
///         run by the engine's fallback (delegatecall, on the engine's storage); called directly it acts on its own
///         empty storage and touches nothing of the engine's.
contract MarginEngineExtension is EngineBase {
    using WadMath for uint256;

    uint256 private constant WAD = 1e18;

    /// @notice The facet that serves custody (IVault) and the pool's side (IPoolEngine): every selector this
    ///         extension does not define runs its code, on the engine's storage.
    address public immutable custody;

    constructor(IOracleRouter oracle_, ILiquidityPool pool_, address gasAsset_, address custody_, address owner_)
        EngineBase(oracle_, pool_, gasAsset_, owner_)
    {
        custody = custody_;
    }

    /// @dev The second hop of the engine's router (engine → extension → custody), delegatecall all the way: the
    ///      custody code runs on the engine's storage with the original caller.
    fallback() external {
        _delegate(custody);
    }

    // =================================================================== governance

    function createMarket(IMarginEngine.MarketParams calldata params) external onlyOwner returns (uint256 marketId) {
        return GovernanceLogic.createMarket(_s, params);
    }

    function setMarketParams(uint256 marketId, IMarginEngine.MarketParams calldata params) external onlyOwner {
        _requireMarket(marketId);
        GovernanceLogic.setMarketParams(_s, oracle, marketId, params);
    }

    function setRiskParams(IMarginEngine.RiskParams calldata p) external onlyOwner {
        GovernanceLogic.setRiskParams(_s, p);
    }

    function setGuardian(address guardian_) external onlyOwner {
        guardian = guardian_;
        emit IMarginEngine.GuardianSet(guardian_);
    }

    function setPaused(bool paused_) external {
        if (msg.sender != guardian && msg.sender != owner()) revert IMarginEngine.NotGuardian(msg.sender);
        paused = paused_;
        emit IMarginEngine.PausedSet(paused_);
    }

    function setFeeParams(IRebalancer.FeeParams calldata params) external onlyOwner {
        _setFeeParams(params);
    }

    function setUpkeepSize(uint256 size) external onlyOwner {
        _setUpkeepSize(size);
    }

    function setUpkeepFeeRecipient(address recipient) external onlyOwner {
        _s.upkeepFeeRecipient = recipient;
        emit IRebalancer.UpkeepFeeRecipientSet(recipient);
    }

    // =================================================================== policies and rebalancing views

    function setRebalancePolicy(uint256 accountId, IMarginEngine.RebalancePolicy calldata policy) external {
        _requireAuthorized(accountId);
        RebalanceLogic.setPolicy(_s, accountId, policy);
    }

    function needsRebalance(uint256 accountId)
        external
        view
        returns (bool needed, IRebalancer.Status status, IMarginEngine.RebalancePlan memory plan)
    {
        return RebalanceLogic.needsRebalance(_s, _env(), accountId, msg.sender);
    }

    /// @notice Scans account ids [start, start + count) (checkData = abi.encode(start, count); empty = every
    ///         account, at most MAX_UPKEEP_SCAN) and returns up to `upkeepSize` that need a rebalance,
    ///         spending at most UPKEEP_CHECK_GAS_BUDGET (accounts without positions cost one read each).
    function checkUpkeep(bytes calldata checkData) external view returns (bool upkeepNeeded, bytes memory performData) {
        return RebalanceLogic.checkUpkeep(_s, _env(), checkData);
    }

    function keeperFee(uint256 maxFeeUsd) external view returns (uint256) {
        return RebalanceLogic.keeperFee(_s, _env(), maxFeeUsd);
    }

    function feeParams() external view returns (IRebalancer.FeeParams memory) {
        return IRebalancer.FeeParams(_s.hot.baseFeeUsd, _s.hot.gasUnits);
    }

    function upkeepSize() external view returns (uint256) {
        return _s.upkeepSize;
    }

    function upkeepFeeRecipient() external view returns (address) {
        return _s.upkeepFeeRecipient;
    }

    function rebalancePolicy(uint256 accountId) external view returns (IMarginEngine.RebalancePolicy memory) {
        return AccountLogic.loadPolicy(_s, accountId);
    }

    function lastRebalanceAt(uint256 accountId) external view returns (uint256) {
        return _s.accounts[accountId].lastRebalanceAt;
    }

    function rebalanceReadyAt(uint256 accountId) external view returns (uint256) {
        return AccountLogic.rebalanceReadyAt(_s, accountId);
    }

    function rebalanceInputs(uint256 accountId)
        external
        view
        returns (IMarginEngine.AccountState memory state, uint256 closeFeeUsd, uint256 maintenanceNowUsd)
    {
        AccountLogic.Ctx memory ctx = AccountLogic.newCtx(_env());
        AccountLogic.requireAccountPrices(_s, ctx, accountId);
        state = AccountLogic.valuation(_s, ctx, accountId);
        closeFeeUsd = AccountLogic.closeFeeUsd(_s, ctx, accountId);
        // Only a rescue (health < 1) reads it: a rebalance in or above band does not pay for the loop.
        if (state.health < WAD) maintenanceNowUsd = AccountLogic.currentVolMaintenance(_s, ctx, accountId);
    }

    // =================================================================== views

    function accountState(uint256 accountId) external view returns (IMarginEngine.AccountState memory) {
        AccountLogic.Ctx memory ctx = AccountLogic.newCtx(_env());
        AccountLogic.requireAccountPrices(_s, ctx, accountId);
        return AccountLogic.valuation(_s, ctx, accountId);
    }

    function healthBatch(uint256[] calldata accountIds)
        external
        view
        returns (uint256[] memory healths, bool[] memory priced)
    {
        AccountLogic.Ctx memory ctx = AccountLogic.newCtx(_env());
        healths = new uint256[](accountIds.length);
        priced = new bool[](accountIds.length);
        for (uint256 i; i < accountIds.length; ++i) {
            if (AccountLogic.viewAccountPrices(_s, ctx, accountIds[i]) != address(0)) continue;
            priced[i] = true;
            healths[i] = AccountLogic.valuation(_s, ctx, accountIds[i], false).health; // health needs no IM
        }
    }

    function liquidationFraction(uint256 accountId) external view returns (uint256) {
        AccountLogic.Ctx memory ctx = AccountLogic.newCtx(_env());
        AccountLogic.requireAccountPrices(_s, ctx, accountId);
        IMarginEngine.AccountState memory s = AccountLogic.valuation(_s, ctx, accountId, false); // as liquidate
        if (s.health >= WAD || AccountLogic.canRescue(_s, ctx, accountId, s)) return 0;
        return LiquidationLogic.liquidationFraction(
            s, AccountLogic.currentVolMaintenance(_s, ctx, accountId), _s.risk, ctx.env.settlementScale
        );
    }

    function rescueAvailable(uint256 accountId) external view returns (bool) {
        AccountLogic.Ctx memory ctx = AccountLogic.newCtx(_env());
        AccountLogic.requireAccountPrices(_s, ctx, accountId);
        IMarginEngine.AccountState memory s = AccountLogic.valuation(_s, ctx, accountId, false); // as liquidate
        return s.health < WAD && AccountLogic.canRescue(_s, ctx, accountId, s);
    }

    function position(uint256 accountId, uint256 marketId) external view returns (IMarginEngine.Position memory) {
        AccountLogic.PositionSlot storage p = _s.positions[accountId][marketId];
        int128 size = p.size;
        // A closed position keeps its entry fields (AccountLogic.applyTrade): not a position, all zero.
        if (size == 0) return IMarginEngine.Position(0, 0, 0);
        uint256 entry = p.entryPrice;
        return IMarginEngine.Position(size, uint128(entry), int256(entry) - p.entryNet);
    }

    function positionMask(uint256 accountId) external view returns (uint256) {
        return _s.accounts[accountId].positionMask;
    }

    function marketParams(uint256 marketId) external view returns (IMarginEngine.MarketParams memory) {
        _requireMarket(marketId);
        return AccountLogic.marketParamsOf(_s.markets[marketId]);
    }

    function marketState(uint256 marketId) external view returns (IMarginEngine.MarketState memory) {
        _requireMarket(marketId);
        return _s.marketStates[marketId];
    }

    function marketCount() external view returns (uint256) {
        return _s.marketCount;
    }

    function riskParams() external view returns (IMarginEngine.RiskParams memory) {
        return _s.risk;
    }

    function maintenanceRate(uint256 marketId, uint256 notional) external view returns (uint256) {
        _requireMarket(marketId);
        AccountLogic.MarketSlot storage m = _s.markets[marketId];
        return AccountLogic.mmr(_s, m, notional, oracle.maintenanceVolatility(m.asset));
    }

    function totalDebtUsd() external view returns (uint256) {
        return _s.totalDebtUsd;
    }

    function poolExposure() external view returns (bool ok, uint256 profitUsd, uint256 lossUsd, uint256 backing) {
        uint256 n = _s.marketCount;
        for (uint256 id; id < n; ++id) {
            IMarginEngine.MarketState storage st = _s.marketStates[id];
            if (st.longOI == 0 && st.shortOI == 0) continue;
            AccountLogic.MarketSlot storage m = _s.markets[id];
            (bool priced, uint256 px) = oracle.tryPrice(m.asset);
            if (!priced) return (false, 0, 0, 0);
            int256 index = AccountLogic.fundingIndexNow(_s, id, px);
            // Each side on its own: Σ size·(P − F) − Σ size·(entry − F_entry), exact in WAD², rounded up once
            // whichever way it goes (a profit is a liability; a loss only raises what a new LP pays).
            (profitUsd, lossUsd) = _addSide(profitUsd, lossUsd, int256(uint256(st.longOI)), st.longEntryNetSum, px, index);
            (profitUsd, lossUsd) = _addSide(profitUsd, lossUsd, -int256(uint256(st.shortOI)), st.shortEntryNetSum, px, index);
            uint256 oiUsd = Math.max(st.longOI, st.shortOI).mulDivUp(px, WAD);
            // Capital at which this market's open interest sits exactly at its cap, in token units, up.
            uint256 needed = oiUsd.wDivUp(AccountLogic.nano(m.oiCapFraction)).mulDivUp(1, settlementScale);
            if (needed > backing) backing = needed;
        }
        // Realised debts not yet collected are owed to the pool as much as open losses are.
        lossUsd += _s.totalDebtUsd;
        ok = true;
    }

    /// @dev Adds one side's open PnL to the profit or the loss total, rounded up (away from zero).
    function _addSide(
        uint256 profitUsd,
        uint256 lossUsd,
        int256 size,
        int256 entryNetSum,
        uint256 px,
        int256 index
    ) private pure returns (uint256, uint256) {
        int256 pnl2 = size * (int256(px) - index) - entryNetSum;
        if (pnl2 > 0) profitUsd += uint256(pnl2).mulDivUp(1, WAD);
        else if (pnl2 < 0) lossUsd += uint256(-pnl2).mulDivUp(1, WAD);
        return (profitUsd, lossUsd);
    }
}
