// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC4626} from "@openzeppelin/contracts/interfaces/IERC4626.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";

import {IMarginEngine} from "../interfaces/IMarginEngine.sol";
import {IMarginChecker} from "../interfaces/IMarginChecker.sol";
import {IPoolEngine} from "../interfaces/IPoolEngine.sol";
import {IVault} from "../interfaces/IVault.sol";
import {IOracleRouter} from "../interfaces/IOracleRouter.sol";
import {ILiquidityPool} from "../interfaces/ILiquidityPool.sol";
import {WadMath} from "../libraries/WadMath.sol";
import {AccountLogic} from "../libraries/logic/AccountLogic.sol";
import {LiquidationLogic} from "../libraries/logic/LiquidationLogic.sol";
import {TradeLogic} from "../libraries/logic/TradeLogic.sol";
import {RebalanceLogic} from "../libraries/logic/RebalanceLogic.sol";
import {GovernanceLogic} from "../libraries/logic/GovernanceLogic.sol";

/// @title MarginEngine
/// @notice Cross-margin perpetual markets, account valuation, liquidation. See IMarginEngine.
contract MarginEngine is IMarginEngine, Ownable2Step {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;
    using SafeCast for int256;
    using WadMath for uint256;

    uint256 private constant WAD = 1e18;

    IVault public immutable vault;
    IOracleRouter public immutable oracle;
    /// @inheritdoc IMarginEngine
    address public immutable pool;
    /// @notice The pool's asset (USDC): markets settle in it and it counts as exactly 1 USD.
    address public immutable settlementAsset;
    /// @dev 10^(18 − settlement decimals): WAD USD per settlement-token unit.
    uint256 private immutable settlementScale;

    /// @dev Every storage variable, in the layout the `*Logic` libraries share (AccountLogic.Storage).
    AccountLogic.Storage private _s;
    address public guardian;
    bool public paused;

    constructor(IVault vault_, IOracleRouter oracle_, ILiquidityPool pool_, address owner_) Ownable(owner_) {
        if (address(vault_) == address(0) || address(oracle_) == address(0) || address(pool_) == address(0)) {
            revert ZeroAddress();
        }
        vault = vault_;
        oracle = oracle_;
        pool = address(pool_);
        address usdc = IERC4626(address(pool_)).asset();
        settlementAsset = usdc;
        IVault.AssetConfig memory cfg = vault_.assetConfig(usdc);
        if (!cfg.listed) revert SettlementAssetNotListed(usdc);
        settlementScale = 10 ** (18 - cfg.decimals);
    }

    /// @dev The lock the vault, the engine and the pool share (held in the vault's transient storage): a token
    ///      callback during any of their state changes cannot re-enter any of them.
    modifier nonReentrant() {
        vault.enterLock();
        _;
        vault.exitLock();
    }

    /// @dev Keeps `totalDebtUsd` = Σ max(0, −settlement) across every call that can change one account's
    ///      settlement balance: one comparison at the end of the call, a store only when the debt changed.
    modifier tracksDebt(uint256 accountId) {
        int256 before = _s.settlement[accountId];
        _;
        int256 current = _s.settlement[accountId];
        if (current != before) {
            uint256 debtBefore = before < 0 ? uint256(-before) : 0;
            uint256 debtNow = current < 0 ? uint256(-current) : 0;
            if (debtNow != debtBefore) _s.totalDebtUsd = _s.totalDebtUsd + debtNow - debtBefore;
        }
    }

    // =================================================================== governance

    /// @inheritdoc IMarginEngine
    function createMarket(MarketParams calldata params) external onlyOwner returns (uint256 marketId) {
        return GovernanceLogic.createMarket(_s, params);
    }

    /// @inheritdoc IMarginEngine
    function setMarketParams(uint256 marketId, MarketParams calldata params) external onlyOwner {
        _requireMarket(marketId);
        GovernanceLogic.setMarketParams(_s, oracle, marketId, params);
    }

    /// @inheritdoc IMarginEngine
    function setRiskParams(RiskParams calldata p) external onlyOwner {
        GovernanceLogic.setRiskParams(_s, p);
    }

    /// @inheritdoc IMarginEngine
    function setGuardian(address guardian_) external onlyOwner {
        guardian = guardian_;
        emit GuardianSet(guardian_);
    }

    /// @inheritdoc IMarginEngine
    function setPaused(bool paused_) external {
        if (msg.sender != guardian && msg.sender != owner()) revert NotGuardian(msg.sender);
        paused = paused_;
        emit PausedSet(paused_);
    }

    // =================================================================== trading

    /// @inheritdoc IMarginEngine
    function modifyPosition(uint256 accountId, uint256 marketId, int256 sizeDelta, uint256 acceptablePrice)
        external
        nonReentrant
        tracksDebt(accountId)
    {
        _requireAuthorized(accountId);
        _requireMarket(marketId);
        TradeLogic.modifyPosition(_s, _env(), accountId, marketId, sizeDelta, acceptablePrice, paused);
    }

    /// @inheritdoc IMarginEngine
    function settle(uint256 accountId) external nonReentrant tracksDebt(accountId) {
        AccountLogic.Env memory env = _env();
        AccountLogic.settle(_s, env, accountId);
        AccountLogic.writeOffIfEmpty(_s, env, accountId);
    }

    /// @inheritdoc IMarginChecker
    /// @dev Runs inside the vault's `releaseMargin`, which holds the shared lock. An account with no position
    ///      and no debt needs no price at all (Promise 6: it can always take everything out).
    function checkMarginRelease(uint256 accountId) external {
        if (msg.sender != address(vault)) revert NotVault(msg.sender);
        if (_s.positionMask[accountId] == 0 && _s.settlement[accountId] >= 0) return;
        AccountLogic.Ctx memory ctx = AccountLogic.newCtx(_env());
        AccountLogic.pokeAccount(_s, ctx, accountId);
        AccountState memory s = AccountLogic.valuation(_s, ctx, accountId);
        if (s.equity < s.initialMargin.toInt256()) revert BelowInitialMargin(accountId, s.equity, s.initialMargin);
    }

    // =================================================================== liquidation

    /// @inheritdoc IMarginEngine
    function liquidate(uint256 accountId) external nonReentrant tracksDebt(accountId) returns (uint256 fraction) {
        return LiquidationLogic.liquidate(_s, _env(), accountId);
    }

    /// @inheritdoc IMarginEngine
    function buyCollateral(uint256 accountId, address token, uint256 repay, uint256 minAmountOut)
        external
        nonReentrant
        tracksDebt(accountId)
        returns (uint256 amountOut)
    {
        return LiquidationLogic.buyCollateral(_s, _env(), accountId, token, repay, minAmountOut);
    }

    // =================================================================== rebalancing

    /// @inheritdoc IMarginEngine
    function setRebalancer(address module, bool allowed) external onlyOwner {
        if (module == address(0)) revert ZeroAddress();
        _s.rebalancers[module] = allowed;
        emit RebalancerSet(module, allowed);
    }

    /// @inheritdoc IMarginEngine
    function setRebalancePolicy(uint256 accountId, RebalancePolicy calldata policy) external {
        _requireAuthorized(accountId);
        RebalanceLogic.setPolicy(_s, _env(), accountId, policy);
    }

    /// @inheritdoc IMarginEngine
    function applyRebalance(uint256 accountId, RebalancePlan calldata plan)
        external
        nonReentrant
        tracksDebt(accountId)
        returns (uint256 healthBefore, uint256 healthAfter)
    {
        return RebalanceLogic.applyRebalance(_s, _env(), accountId, plan);
    }

    /// @inheritdoc IMarginEngine
    function pokeAccount(uint256 accountId) external {
        AccountLogic.pokeAccount(_s, AccountLogic.newCtx(_env()), accountId);
    }

    /// @inheritdoc IMarginEngine
    function isRebalancer(address module) external view returns (bool) {
        return _s.rebalancers[module];
    }

    /// @inheritdoc IMarginEngine
    function rebalancePolicy(uint256 accountId) external view returns (RebalancePolicy memory) {
        return _s.policies[accountId];
    }

    /// @inheritdoc IMarginEngine
    function lastRebalanceAt(uint256 accountId) external view returns (uint256) {
        return _s.lastRebalanceAt[accountId];
    }

    /// @inheritdoc IMarginEngine
    function rebalanceReadyAt(uint256 accountId) external view returns (uint256) {
        return AccountLogic.rebalanceReadyAt(_s, accountId);
    }

    /// @inheritdoc IMarginEngine
    function rebalanceInputs(uint256 accountId)
        external
        view
        returns (AccountState memory state, uint256 closeFeeUsd, uint256 maintenanceNowUsd)
    {
        AccountLogic.Ctx memory ctx = AccountLogic.newCtx(_env());
        AccountLogic.requireAccountPrices(_s, ctx, accountId);
        state = AccountLogic.valuation(_s, ctx, accountId);
        closeFeeUsd = AccountLogic.closeFeeUsd(_s, ctx, accountId);
        // Only a rescue (health < 1) reads it: a rebalance in or above band does not pay for the loop.
        if (state.health < WAD) maintenanceNowUsd = AccountLogic.currentVolMaintenance(_s, ctx, accountId);
    }

    // =================================================================== views

    /// @inheritdoc IMarginEngine
    function accountState(uint256 accountId) external view returns (AccountState memory) {
        AccountLogic.Ctx memory ctx = AccountLogic.newCtx(_env());
        AccountLogic.requireAccountPrices(_s, ctx, accountId);
        return AccountLogic.valuation(_s, ctx, accountId);
    }

    /// @inheritdoc IMarginEngine
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
            healths[i] = AccountLogic.valuation(_s, ctx, accountIds[i]).health;
        }
    }

    /// @inheritdoc IMarginEngine
    function liquidationFraction(uint256 accountId) external view returns (uint256) {
        AccountLogic.Ctx memory ctx = AccountLogic.newCtx(_env());
        AccountLogic.requireAccountPrices(_s, ctx, accountId);
        AccountState memory s = AccountLogic.valuation(_s, ctx, accountId);
        if (s.health >= WAD || AccountLogic.canRescue(_s, ctx, accountId, s)) return 0;
        return LiquidationLogic.liquidationFraction(
            s, AccountLogic.currentVolMaintenance(_s, ctx, accountId), _s.risk, ctx.env.settlementScale
        );
    }

    /// @inheritdoc IMarginEngine
    function rescueAvailable(uint256 accountId) external view returns (bool) {
        AccountLogic.Ctx memory ctx = AccountLogic.newCtx(_env());
        AccountLogic.requireAccountPrices(_s, ctx, accountId);
        AccountState memory s = AccountLogic.valuation(_s, ctx, accountId);
        return s.health < WAD && AccountLogic.canRescue(_s, ctx, accountId, s);
    }

    /// @inheritdoc IMarginEngine
    function position(uint256 accountId, uint256 marketId) external view returns (Position memory) {
        return _s.positions[accountId][marketId];
    }

    /// @inheritdoc IMarginEngine
    function positionMask(uint256 accountId) external view returns (uint256) {
        return _s.positionMask[accountId];
    }

    /// @inheritdoc IMarginEngine
    function marketParams(uint256 marketId) external view returns (MarketParams memory) {
        _requireMarket(marketId);
        return _s.markets[marketId];
    }

    /// @inheritdoc IMarginEngine
    function marketState(uint256 marketId) external view returns (MarketState memory) {
        _requireMarket(marketId);
        return _s.marketStates[marketId];
    }

    /// @inheritdoc IMarginEngine
    function marketCount() external view returns (uint256) {
        return _s.markets.length;
    }

    /// @inheritdoc IMarginEngine
    function riskParams() external view returns (RiskParams memory) {
        return _s.risk;
    }

    /// @inheritdoc IMarginEngine
    function maintenanceRate(uint256 marketId, uint256 notional) external view returns (uint256) {
        _requireMarket(marketId);
        MarketParams storage m = _s.markets[marketId];
        return AccountLogic.mmr(_s, m, notional, oracle.maintenanceVolatility(m.asset));
    }

    /// @inheritdoc IPoolEngine
    function poolExposure() external view returns (bool ok, uint256 profitUsd, uint256 lossUsd, uint256 backing) {
        uint256 n = _s.markets.length;
        for (uint256 id; id < n; ++id) {
            MarketState storage st = _s.marketStates[id];
            if (st.longOI == 0 && st.shortOI == 0) continue;
            MarketParams storage m = _s.markets[id];
            (bool priced, uint256 px) = oracle.tryPrice(m.asset);
            if (!priced) return (false, 0, 0, 0);
            int256 index = AccountLogic.fundingIndexNow(_s, id, px);
            // Each side on its own: Σ size·(P − entry) − Σ size·(F − F_entry), exact in WAD², rounded up once
            // whichever way it goes (a profit is a liability; a loss only raises what a new LP pays).
            (profitUsd, lossUsd) = _addSide(profitUsd, lossUsd, int256(st.longOI), st.longEntrySum, st.longFundingSum, px, index);
            (profitUsd, lossUsd) =
                _addSide(profitUsd, lossUsd, -int256(st.shortOI), st.shortEntrySum, st.shortFundingSum, px, index);
            uint256 oiUsd = Math.max(st.longOI, st.shortOI).mulDivUp(px, WAD);
            // Capital at which this market's open interest sits exactly at its cap, in token units, up.
            uint256 needed = oiUsd.wDivUp(m.oiCapFraction).mulDivUp(1, settlementScale);
            if (needed > backing) backing = needed;
        }
        // Realised debts not yet collected are owed to the pool as much as open losses are.
        lossUsd += _s.totalDebtUsd;
        ok = true;
    }

    /// @inheritdoc IMarginEngine
    function totalDebtUsd() external view returns (uint256) {
        return _s.totalDebtUsd;
    }

    /// @dev Adds one side's open PnL to the profit or the loss total, rounded up (away from zero).
    function _addSide(
        uint256 profitUsd,
        uint256 lossUsd,
        int256 size,
        int256 entrySum,
        int256 fundingSum,
        uint256 px,
        int256 index
    ) private pure returns (uint256, uint256) {
        int256 pnl2 = size * int256(px) - entrySum - (size * index - fundingSum);
        if (pnl2 > 0) profitUsd += uint256(pnl2).mulDivUp(1, WAD);
        else if (pnl2 < 0) lossUsd += uint256(-pnl2).mulDivUp(1, WAD);
        return (profitUsd, lossUsd);
    }

    // =================================================================== internals

    function _env() private view returns (AccountLogic.Env memory) {
        return AccountLogic.Env(vault, oracle, ILiquidityPool(pool), settlementAsset, settlementScale);
    }

    function _requireAuthorized(uint256 accountId) private view {
        if (!vault.isAuthorized(accountId, msg.sender)) revert NotAuthorized(accountId, msg.sender);
    }

    function _requireMarket(uint256 marketId) private view {
        if (marketId >= _s.markets.length) revert UnknownMarket(marketId);
    }
}
