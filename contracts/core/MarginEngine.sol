// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC4626} from "@openzeppelin/contracts/interfaces/IERC4626.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {IMarginEngine} from "../interfaces/IMarginEngine.sol";
import {IMarginChecker} from "../interfaces/IMarginChecker.sol";
import {IPoolEngine} from "../interfaces/IPoolEngine.sol";
import {IVault} from "../interfaces/IVault.sol";
import {IOracleRouter} from "../interfaces/IOracleRouter.sol";
import {ILiquidityPool} from "../interfaces/ILiquidityPool.sol";
import {WadMath} from "../libraries/WadMath.sol";
import "../libraries/Constants.sol" as C;

/// @title MarginEngine
/// @notice Cross-margin perpetual markets, account valuation, liquidation. See IMarginEngine.
contract MarginEngine is IMarginEngine, Ownable2Step, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;
    using SafeCast for int256;
    using WadMath for uint256;

    uint256 private constant WAD = 1e18;
    int256 private constant IWAD = 1e18;
    /// @dev Prices cached per call: at most every listed asset plus every market asset.
    uint256 private constant MAX_CACHED = 32; // = MAX_ASSETS + MAX_MARKETS (array lengths need a literal)

    IVault public immutable vault;
    IOracleRouter public immutable oracle;
    ILiquidityPool public immutable pool;
    /// @notice The pool's asset (USDC): markets settle in it and it counts as exactly 1 USD.
    address public immutable settlementAsset;
    /// @dev 10^(18 − settlement decimals): WAD USD per settlement-token unit.
    uint256 private immutable settlementScale;

    MarketParams[] private _markets;
    mapping(uint256 marketId => MarketState) private _marketStates;
    mapping(uint256 accountId => mapping(uint256 marketId => Position)) private _positions;
    mapping(uint256 accountId => uint256) private _positionMask;
    mapping(uint256 accountId => int256) private _settlement;

    RiskParams private _risk;
    /// @dev sqrt(volHorizon / year), WAD, derived from `_risk.volHorizon` when it is set.
    uint256 private _sqrtHorizon;
    address public guardian;
    bool public paused;

    /// @dev Everything one valuation (or a batch of them) needs, read once: listed collateral and a
    ///      price cache keyed by asset. `poke` selects the door: state changes poke the oracle, views read it.
    struct Ctx {
        address[] listed;
        IVault.AssetConfig[] configs;
        address[MAX_CACHED] pxAsset;
        uint256[MAX_CACHED] pxValue;
        uint256[MAX_CACHED] volValue; // 0 = not read yet (a volatility is never below its floor > 0)
        uint256 pxCount;
        uint256 poolCapitalUsd;
    }

    constructor(IVault vault_, IOracleRouter oracle_, ILiquidityPool pool_, address owner_) Ownable(owner_) {
        if (address(vault_) == address(0) || address(oracle_) == address(0) || address(pool_) == address(0)) {
            revert ZeroAddress();
        }
        vault = vault_;
        oracle = oracle_;
        pool = pool_;
        address usdc = IERC4626(address(pool_)).asset();
        settlementAsset = usdc;
        IVault.AssetConfig memory cfg = vault_.assetConfig(usdc);
        if (!cfg.listed) revert SettlementAssetNotListed(usdc);
        settlementScale = 10 ** (18 - cfg.decimals);
    }

    // =================================================================== governance

    /// @inheritdoc IMarginEngine
    function createMarket(MarketParams calldata params) external onlyOwner returns (uint256 marketId) {
        if (_markets.length >= C.MAX_MARKETS) revert TooManyMarkets(C.MAX_MARKETS);
        _checkMarketParams(params);
        marketId = _markets.length;
        _markets.push(params);
        _marketStates[marketId].lastFundingTime = uint64(block.timestamp);
        emit MarketCreated(marketId, params);
    }

    /// @inheritdoc IMarginEngine
    function setMarketParams(uint256 marketId, MarketParams calldata params) external onlyOwner {
        _requireMarket(marketId);
        _checkMarketParams(params);
        if (params.asset != _markets[marketId].asset) revert ParamOutOfBounds("asset", 0, 0, 0);
        // Funding accrued so far is charged at the old rate before the parameters change.
        (bool ok, uint256 px) = oracle.poke(params.asset);
        if (!ok) revert OracleUnhealthy(params.asset);
        _accrueFunding(marketId, px);
        _markets[marketId] = params;
        emit MarketParamsSet(marketId, params);
    }

    /// @inheritdoc IMarginEngine
    function setRiskParams(RiskParams calldata p) external onlyOwner {
        _bound("liquidationTargetRatio", p.liquidationTargetRatio, C.MIN_LIQ_TARGET, C.MAX_LIQ_TARGET);
        _bound("fullLiquidationHealth", p.fullLiquidationHealth, 0, WAD);
        _bound("liquidationPenalty", p.liquidationPenalty, 0, C.MAX_LIQ_PENALTY);
        _bound("keeperPenaltyShare", p.keeperPenaltyShare, 0, WAD);
        _bound("keeperReward", p.keeperReward, 0, C.MAX_KEEPER_REWARD);
        _bound("dustNotional", p.dustNotional, 0, C.MAX_DUST_NOTIONAL);
        _bound("collateralDiscount", p.collateralDiscount, 0, C.MAX_COLLATERAL_DISCOUNT);
        _bound("volHorizon", p.volHorizon, C.MIN_VOL_HORIZON, C.MAX_VOL_HORIZON);
        _risk = p;
        // sqrt(horizon / year), rounded up: the volatility term of the maintenance rate is a requirement.
        _sqrtHorizon = Math.sqrt(Math.mulDiv(uint256(p.volHorizon), WAD * WAD, C.SECONDS_PER_YEAR), Math.Rounding.Ceil);
        emit RiskParamsSet(p);
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

    function _checkMarketParams(MarketParams calldata p) private pure {
        if (p.asset == address(0)) revert ZeroAddress();
        _bound("baseMMR", p.baseMMR, C.MIN_BASE_MMR, C.MAX_BASE_MMR);
        _bound("maxMMR", p.maxMMR, p.baseMMR, WAD);
        _bound("volK", p.volK, 0, C.MAX_VOL_K);
        _bound("sizeK", p.sizeK, 0, C.MAX_SIZE_K);
        _bound("imFactor", p.imFactor, C.MIN_IM_FACTOR, C.MAX_IM_FACTOR);
        _bound("feeRate", p.feeRate, 0, C.MAX_FEE_RATE);
        _bound("oiCapFraction", p.oiCapFraction, 1, C.MAX_OI_CAP_FRACTION);
        _bound("maxFundingRate", p.maxFundingRate, 0, C.MAX_FUNDING_RATE);
        _bound("skewScale", p.skewScale, 1, type(uint128).max);
    }

    function _bound(bytes32 name, uint256 value, uint256 min, uint256 max) private pure {
        if (value < min || value > max) revert ParamOutOfBounds(name, value, min, max);
    }

    // =================================================================== trading

    /// @inheritdoc IMarginEngine
    function modifyPosition(uint256 accountId, uint256 marketId, int256 sizeDelta, uint256 acceptablePrice)
        external
        nonReentrant
    {
        _requireAuthorized(accountId);
        _requireMarket(marketId);
        if (sizeDelta == 0) revert ZeroSizeDelta();
        MarketParams memory m = _markets[marketId];

        Ctx memory ctx = _newCtx();
        uint256 px = _pokePrice(ctx, m.asset);
        if (sizeDelta > 0 ? px > acceptablePrice : px < acceptablePrice) revert PriceNotAcceptable(px, acceptablePrice);

        int256 oldSize = _positions[accountId][marketId].size;
        int256 newSize = oldSize + sizeDelta;
        bool increasesRisk = WadMath.abs(newSize) > WadMath.abs(oldSize) || (oldSize > 0 && newSize < 0)
            || (oldSize < 0 && newSize > 0);
        if (increasesRisk && paused) revert PositionIncreasePaused();

        // Fee rounds up: the trader never pays less than feeRate of the traded notional.
        uint256 fee = WadMath.abs(sizeDelta).mulDivUp(px, WAD).wMulUp(m.feeRate);
        _applyTrade(accountId, marketId, sizeDelta, px, fee);
        _changeSettlement(accountId, -fee.toInt256());
        _settle(accountId);

        if (increasesRisk) {
            _checkOpenInterest(marketId, m, px, ctx.poolCapitalUsd, newSize > 0);
            _pokeAccount(ctx, accountId);
            AccountState memory s = _valuation(ctx, accountId);
            if (s.equity < s.initialMargin.toInt256()) {
                revert BelowInitialMargin(accountId, s.equity, s.initialMargin);
            }
        }
    }

    /// @inheritdoc IMarginEngine
    function settle(uint256 accountId) external nonReentrant {
        _settle(accountId);
    }

    /// @inheritdoc IMarginChecker
    function checkMarginRelease(uint256 accountId) external {
        if (msg.sender != address(vault)) revert NotVault(msg.sender);
        Ctx memory ctx = _newCtx();
        _pokeAccount(ctx, accountId);
        AccountState memory s = _valuation(ctx, accountId);
        if (s.equity < s.initialMargin.toInt256()) revert BelowInitialMargin(accountId, s.equity, s.initialMargin);
    }

    // =================================================================== liquidation

    /// @inheritdoc IMarginEngine
    function liquidate(uint256 accountId) external nonReentrant returns (uint256 fraction) {
        Ctx memory ctx = _newCtx();
        _pokeAccount(ctx, accountId);
        AccountState memory before = _valuation(ctx, accountId);
        if (before.health >= WAD) revert NotLiquidatable(accountId, before.health);

        RiskParams memory r = _risk;
        fraction = _liquidationFraction(before, r);

        uint256 closedNotional;
        uint256 mask = _positionMask[accountId];
        for (uint256 id; mask != 0; ++id) {
            if (mask & 1 != 0) {
                int256 size = _positions[accountId][id].size;
                // The closed size rounds away from zero (more is closed); f <= 1 keeps it within the position.
                int256 closeSize = size > 0 ? WadMath.mulDivCeil(size, fraction, WAD) : WadMath.mulDivFloor(size, fraction, WAD);
                uint256 px = _cachedPrice(ctx, _markets[id].asset);
                closedNotional += WadMath.abs(closeSize).mulDivUp(px, WAD);
                _applyTrade(accountId, id, -closeSize, px, 0);
            }
            mask >>= 1;
        }

        // Penalty rounds up (against the account); the liquidator's share rounds down (for the protocol).
        uint256 penalty = closedNotional.wMulUp(r.liquidationPenalty);
        uint256 keeperShareUsd = penalty.wMulDown(r.keeperPenaltyShare);
        uint256 keeperUsd = r.keeperReward + keeperShareUsd;
        _changeSettlement(accountId, -(r.keeperReward + penalty).toInt256());
        // Keeper and insurance are paid by the pool (the clearing house); the account's settlement
        // balance owes the pool the same amount and is settled right after. Token amounts round down.
        pool.pay(msg.sender, keeperUsd / settlementScale);
        pool.addInsurance((penalty - keeperShareUsd) / settlementScale);
        _settle(accountId);

        ctx.poolCapitalUsd = pool.capital() * settlementScale;
        AccountState memory afterState = _valuation(ctx, accountId);
        _writeOffIfEmpty(accountId);
        emit Liquidated(
            accountId, msg.sender, fraction, closedNotional, penalty, keeperUsd, before.health, afterState.health
        );
    }

    /// @inheritdoc IMarginEngine
    function buyCollateral(uint256 accountId, address token, uint256 repay, uint256 minAmountOut)
        external
        nonReentrant
        returns (uint256 amountOut)
    {
        int256 s = _settlement[accountId];
        uint256 available = vault.marginOf(accountId, token);
        if (s >= 0 || token == settlementAsset || available == 0 || repay == 0) revert NothingToBuy(accountId);
        Ctx memory ctx = _newCtx();
        _pokeAccount(ctx, accountId);
        if (_positionMask[accountId] != 0) {
            AccountState memory st = _valuation(ctx, accountId);
            if (st.health >= WAD) revert NotLiquidatable(accountId, st.health);
        }
        // Debt in settlement-token units, rounded up: the buyer may repay all of it.
        uint256 debt = uint256(-s).mulDivUp(1, settlementScale);
        if (repay > debt) repay = debt;

        IVault.AssetConfig memory cfg = vault.assetConfig(token);
        uint256 px = _cachedPrice(ctx, token);
        uint256 discounted = px.wMulDown(WAD - _risk.collateralDiscount);
        // Collateral out for the repaid value at the discounted price, rounded down (for the account).
        amountOut = WadMath.toAmountDown(repay * settlementScale, discounted, cfg.decimals);
        if (amountOut > available) {
            amountOut = available;
            // The buyer pays for all of it at the discounted price, rounded up (for the account).
            repay = Math.mulDiv(available, discounted, (10 ** cfg.decimals) * settlementScale, Math.Rounding.Ceil);
        }
        if (amountOut < minAmountOut) revert SlippageExceeded(amountOut, minAmountOut);

        _changeSettlement(accountId, (repay * settlementScale).toInt256());
        if (_settlement[accountId] > 0) _settlement[accountId] = 0; // sub-unit dust of the rounding: protocol's
        IERC20(settlementAsset).safeTransferFrom(msg.sender, address(pool), repay);
        vault.engineDebitMargin(accountId, token, amountOut, msg.sender);
        emit CollateralBought(accountId, msg.sender, token, repay, amountOut);

        _writeOffIfEmpty(accountId);
    }

    /// @dev An account with debt and no margin left and no position: its debt is bad debt.
    function _writeOffIfEmpty(uint256 accountId) private {
        int256 s = _settlement[accountId];
        if (s >= 0 || _positionMask[accountId] != 0 || vault.marginMask(accountId) != 0) return;
        uint256 amountUsd = uint256(-s);
        _settlement[accountId] = 0;
        emit SettlementChanged(accountId, -s, 0);
        // The pool never received this value, so LPs already carry it; the insurance fund makes them whole
        // as far as it can.
        uint256 fromInsurance = pool.coverBadDebt(accountId, amountUsd.mulDivUp(1, settlementScale));
        emit BadDebt(accountId, amountUsd, fromInsurance);
    }

    /// @dev The least fraction of every position whose close restores `liquidationTargetRatio`, counting the
    ///      penalty and the keeper reward as paid: (E − R − p·f·N) ≥ t·(M·(1 − f) + R), with MM = M + R ⇒
    ///      f = (t·(M + R) − E + R) / (t·M − p·N), rounded up; 1 (close all) when the account is far under
    ///      (health < fullLiquidationHealth), the denominator is not positive, or the rest would be dust.
    function _liquidationFraction(AccountState memory s, RiskParams memory r)
        private
        pure
        returns (uint256)
    {
        if (s.health < r.fullLiquidationHealth) return WAD;
        uint256 reserveR = r.keeperReward;
        uint256 mScaled = s.maintenanceMargin - reserveR; // M: the size-proportional part
        int256 num = int256(Math.mulDiv(r.liquidationTargetRatio, s.maintenanceMargin, WAD, Math.Rounding.Ceil))
            - s.equity + int256(reserveR);
        int256 den = int256(mScaled.wMulDown(r.liquidationTargetRatio)) - int256(s.notional.wMulUp(r.liquidationPenalty));
        if (den <= 0 || num >= den) return WAD;
        uint256 f = Math.mulDiv(uint256(num), WAD, uint256(den), Math.Rounding.Ceil);
        uint256 remaining = (s.notional * (WAD - f)) / WAD;
        if (remaining < r.dustNotional) return WAD;
        return f;
    }

    // =================================================================== views

    /// @inheritdoc IMarginEngine
    function accountState(uint256 accountId) external view returns (AccountState memory) {
        Ctx memory ctx = _newCtx();
        _viewAccountPrices(ctx, accountId);
        return _valuation(ctx, accountId);
    }

    /// @inheritdoc IMarginEngine
    function healthBatch(uint256[] calldata accountIds) external view returns (uint256[] memory healths) {
        Ctx memory ctx = _newCtx();
        healths = new uint256[](accountIds.length);
        for (uint256 i; i < accountIds.length; ++i) {
            _viewAccountPrices(ctx, accountIds[i]);
            healths[i] = _valuation(ctx, accountIds[i]).health;
        }
    }

    /// @inheritdoc IMarginEngine
    function liquidationFraction(uint256 accountId) external view returns (uint256) {
        Ctx memory ctx = _newCtx();
        _viewAccountPrices(ctx, accountId);
        AccountState memory s = _valuation(ctx, accountId);
        if (s.health >= WAD) return 0;
        return _liquidationFraction(s, _risk);
    }

    /// @inheritdoc IMarginEngine
    function position(uint256 accountId, uint256 marketId) external view returns (Position memory) {
        return _positions[accountId][marketId];
    }

    /// @inheritdoc IMarginEngine
    function positionMask(uint256 accountId) external view returns (uint256) {
        return _positionMask[accountId];
    }

    /// @inheritdoc IMarginEngine
    function marketParams(uint256 marketId) external view returns (MarketParams memory) {
        _requireMarket(marketId);
        return _markets[marketId];
    }

    /// @inheritdoc IMarginEngine
    function marketState(uint256 marketId) external view returns (MarketState memory) {
        _requireMarket(marketId);
        return _marketStates[marketId];
    }

    /// @inheritdoc IMarginEngine
    function marketCount() external view returns (uint256) {
        return _markets.length;
    }

    /// @inheritdoc IMarginEngine
    function riskParams() external view returns (RiskParams memory) {
        return _risk;
    }

    /// @inheritdoc IMarginEngine
    function maintenanceRate(uint256 marketId, uint256 notional) external view returns (uint256) {
        _requireMarket(marketId);
        MarketParams storage m = _markets[marketId];
        return _mmr(m, notional, oracle.volatility(m.asset), pool.capital() * settlementScale);
    }

    /// @inheritdoc IPoolEngine
    function openTraderPnl() external view returns (int256 pnl) {
        uint256 n = _markets.length;
        for (uint256 id; id < n; ++id) {
            MarketState storage st = _marketStates[id];
            if (st.longOI == 0 && st.shortOI == 0) continue;
            uint256 px = oracle.price(_markets[id].asset);
            int256 net = int256(st.longOI) - int256(st.shortOI);
            int256 index = _fundingIndexNow(id, px);
            // Σ size·(P − entry) − Σ size·(F − F_entry), exact in WAD², rounded up once (against LPs).
            pnl += WadMath.mulDivCeil(
                net * int256(px) - st.sumSizeEntry - (net * index - st.sumSizeFunding), 1, WAD
            );
        }
    }

    /// @inheritdoc IPoolEngine
    function requiredBacking() external view returns (uint256 backing) {
        uint256 n = _markets.length;
        for (uint256 id; id < n; ++id) {
            MarketState storage st = _marketStates[id];
            uint256 oi = Math.max(st.longOI, st.shortOI);
            if (oi == 0) continue;
            uint256 oiUsd = oi.mulDivUp(oracle.price(_markets[id].asset), WAD);
            // Capital at which this market's open interest sits exactly at its cap, in token units, up.
            uint256 needed = oiUsd.wDivUp(_markets[id].oiCapFraction).mulDivUp(1, settlementScale);
            if (needed > backing) backing = needed;
        }
    }

    // =================================================================== internals: valuation

    function _newCtx() private view returns (Ctx memory ctx) {
        (ctx.listed, ctx.configs) = vault.listedAssetConfigs();
        ctx.poolCapitalUsd = pool.capital() * settlementScale;
    }

    /// @dev Account valuation exactly as DESIGN.md. Reads only cached prices (every price the account
    ///      needs must have been loaded by `_pokeAccount` or `_viewAccountPrices`).
    function _valuation(Ctx memory ctx, uint256 accountId) private view returns (AccountState memory s) {
        // C: collateral value, rounded down at both steps (price, then haircut).
        (uint256 assets, uint256[] memory amounts) = vault.marginBalances(accountId);
        for (uint256 i; assets != 0; ++i) {
            if (assets & 1 != 0) {
                uint256 value =
                    WadMath.toValueDown(amounts[i], _cachedPrice(ctx, ctx.listed[i]), ctx.configs[i].decimals);
                s.collateral += value.wMulDown(ctx.configs[i].haircut);
            }
            assets >>= 1;
        }
        s.settlement = _settlement[accountId];

        uint256 mm;
        uint256 im;
        uint256 markets = _positionMask[accountId];
        for (uint256 id; markets != 0; ++id) {
            if (markets & 1 != 0) {
                (int256 pnl, uint256 notional, uint256 req, uint256 initReq) = _positionTerms(ctx, accountId, id);
                s.unrealisedPnl += pnl;
                s.notional += notional;
                mm += req;
                im += initReq;
            }
            markets >>= 1;
        }
        if (_positionMask[accountId] != 0) {
            // The liquidation keeper reward is reserved in both requirements so liquidating always pays.
            mm += _risk.keeperReward;
            im += _risk.keeperReward;
        }
        s.maintenanceMargin = mm;
        s.initialMargin = im;
        s.equity = int256(s.collateral) + s.settlement + s.unrealisedPnl;
        if (mm == 0) s.health = type(uint256).max;
        else if (s.equity <= 0) s.health = 0;
        else s.health = uint256(s.equity).wDivDown(mm); // health rounds down
    }

    /// @dev One position's PnL, notional and requirements. Notional and requirements round up.
    function _positionTerms(Ctx memory ctx, uint256 accountId, uint256 marketId)
        private
        view
        returns (int256 pnl, uint256 notional, uint256 req, uint256 initReq)
    {
        MarketParams storage m = _markets[marketId];
        Position storage p = _positions[accountId][marketId];
        uint256 px = _cachedPrice(ctx, m.asset);
        pnl = _positionPnl(p, px, _fundingIndexNow(marketId, px));
        notional = WadMath.abs(p.size).mulDivUp(px, WAD);
        uint256 vol = m.volK == 0 ? 0 : _cachedVol(ctx, m.asset);
        req = notional.wMulUp(_mmr(m, notional, vol, ctx.poolCapitalUsd));
        initReq = req.wMulUp(m.imFactor);
    }

    /// @dev size·(P − entry) − size·(F − F_entry), rounded down once (against the account).
    function _positionPnl(Position storage p, uint256 px, int256 index) private view returns (int256) {
        int256 size = p.size;
        return WadMath.mulDivFloor(
            size * (int256(px) - int256(p.entryPrice)) - size * (index - p.entryFunding), 1, WAD
        );
    }

    /// @dev mmr = min(maxMMR, baseMMR + volK·σ·sqrt(horizon) + sizeK·N/OIcap), each term rounded up.
    function _mmr(MarketParams storage m, uint256 notional, uint256 vol, uint256 poolCapitalUsd)
        private
        view
        returns (uint256)
    {
        uint256 rate = m.baseMMR;
        if (m.volK != 0) rate += uint256(m.volK).wMulUp(vol).wMulUp(_sqrtHorizon);
        if (m.sizeK != 0) {
            uint256 capUsd = poolCapitalUsd.wMulDown(m.oiCapFraction);
            if (capUsd == 0) return m.maxMMR;
            rate += uint256(m.sizeK).mulDivUp(notional, capUsd);
        }
        return rate > m.maxMMR ? m.maxMMR : rate;
    }

    // =================================================================== internals: prices

    /// @dev Pokes every oracle the account needs (its margin assets and market assets); reverts
    ///      `OracleUnhealthy(asset)` on the first invalid one. Cached, so each asset is poked once per call.
    ///      Same walk as `_viewAccountPrices`: Solidity cannot share one loop between a view and a state-changing
    ///      door without building an asset list in memory, which costs ~1k gas per call on the hot path.
    function _pokeAccount(Ctx memory ctx, uint256 accountId) private {
        uint256 assets = vault.marginMask(accountId);
        for (uint256 i; assets != 0; ++i) {
            if (assets & 1 != 0) _pokePrice(ctx, ctx.listed[i]);
            assets >>= 1;
        }
        uint256 markets = _positionMask[accountId];
        for (uint256 id; markets != 0; ++id) {
            if (markets & 1 != 0) _pokePrice(ctx, _markets[id].asset);
            markets >>= 1;
        }
    }

    /// @dev The view door of `_pokeAccount`: reads `oracle.tryPrice`, reverting `OracleUnhealthy(asset)`.
    function _viewAccountPrices(Ctx memory ctx, uint256 accountId) private view {
        uint256 assets = vault.marginMask(accountId);
        for (uint256 i; assets != 0; ++i) {
            if (assets & 1 != 0) _viewPrice(ctx, ctx.listed[i]);
            assets >>= 1;
        }
        uint256 markets = _positionMask[accountId];
        for (uint256 id; markets != 0; ++id) {
            if (markets & 1 != 0) _viewPrice(ctx, _markets[id].asset);
            markets >>= 1;
        }
    }

    function _pokePrice(Ctx memory ctx, address asset) private returns (uint256 px) {
        (bool found, uint256 cached) = _lookup(ctx, asset);
        if (found) return cached;
        bool ok;
        (ok, px) = oracle.poke(asset);
        if (!ok) revert OracleUnhealthy(asset);
        _store(ctx, asset, px);
    }

    function _viewPrice(Ctx memory ctx, address asset) private view returns (uint256 px) {
        (bool found, uint256 cached) = _lookup(ctx, asset);
        if (found) return cached;
        (bool ok, uint256 p) = oracle.tryPrice(asset);
        if (!ok) revert OracleUnhealthy(asset);
        px = p;
        _store(ctx, asset, px);
    }

    function _cachedPrice(Ctx memory ctx, address asset) private view returns (uint256) {
        (bool found, uint256 px) = _lookup(ctx, asset);
        if (!found) revert OracleUnhealthy(asset);
        return px;
    }

    function _lookup(Ctx memory ctx, address asset) private view returns (bool, uint256) {
        if (asset == settlementAsset) return (true, WAD);
        for (uint256 i; i < ctx.pxCount; ++i) {
            if (ctx.pxAsset[i] == asset) return (true, ctx.pxValue[i]);
        }
        return (false, 0);
    }

    /// @dev Volatility of a market asset whose price is cached, read from the oracle once per call.
    function _cachedVol(Ctx memory ctx, address asset) private view returns (uint256 vol) {
        for (uint256 i; i < ctx.pxCount; ++i) {
            if (ctx.pxAsset[i] == asset) {
                vol = ctx.volValue[i];
                if (vol == 0) {
                    vol = oracle.volatility(asset);
                    ctx.volValue[i] = vol;
                }
                return vol;
            }
        }
        return oracle.volatility(asset);
    }

    function _store(Ctx memory ctx, address asset, uint256 px) private pure {
        ctx.pxAsset[ctx.pxCount] = asset;
        ctx.pxValue[ctx.pxCount] = px;
        ++ctx.pxCount;
    }

    // =================================================================== internals: positions and funding

    /// @dev Applies a size change at `px`: accrues funding, realises the whole position's PnL into the
    ///      settlement balance and re-enters the rest at `px` (value-equivalent to realising only the
    ///      closed part), updates open interest and the exact aggregates the pool values itself with.
    function _applyTrade(uint256 accountId, uint256 marketId, int256 sizeDelta, uint256 px, uint256 fee) internal {
        int256 index = _accrueFunding(marketId, px);
        Position storage p = _positions[accountId][marketId];
        MarketState storage st = _marketStates[marketId];
        int256 oldSize = p.size;
        int256 realised;
        if (oldSize != 0) {
            realised = _positionPnl(p, px, index);
            st.sumSizeEntry -= oldSize * int256(p.entryPrice);
            st.sumSizeFunding -= oldSize * p.entryFunding;
            if (oldSize > 0) st.longOI -= uint256(oldSize);
            else st.shortOI -= uint256(-oldSize);
        }
        int256 newSize = oldSize + sizeDelta;
        if (newSize != 0) {
            p.size = newSize;
            p.entryPrice = px;
            p.entryFunding = index;
            st.sumSizeEntry += newSize * int256(px);
            st.sumSizeFunding += newSize * index;
            if (newSize > 0) st.longOI += uint256(newSize);
            else st.shortOI += uint256(-newSize);
            _positionMask[accountId] |= (1 << marketId);
        } else {
            delete _positions[accountId][marketId];
            _positionMask[accountId] &= ~(1 << marketId);
        }
        if (realised != 0) _changeSettlement(accountId, realised);
        emit PositionModified(accountId, marketId, sizeDelta, newSize, px, realised, fee);
    }

    /// @dev Brings the market's funding index to now at `px` and returns it.
    function _accrueFunding(uint256 marketId, uint256 px) private returns (int256 index) {
        MarketState storage st = _marketStates[marketId];
        index = _fundingIndexNow(marketId, px);
        if (st.lastFundingTime != block.timestamp) {
            st.fundingIndex = index;
            st.lastFundingTime = uint64(block.timestamp);
            emit FundingAccrued(marketId, index, _fundingRate(_markets[marketId], st));
        }
    }

    /// @dev Funding index as if accrued now: F + rate/day × P × dt / 1 day (rounded toward zero).
    function _fundingIndexNow(uint256 marketId, uint256 px) private view returns (int256) {
        MarketState storage st = _marketStates[marketId];
        uint256 dt = block.timestamp - st.lastFundingTime;
        if (dt == 0) return st.fundingIndex;
        int256 rate = _fundingRate(_markets[marketId], st);
        return st.fundingIndex + (rate * int256(px) / IWAD) * int256(dt) / int256(1 days);
    }

    /// @dev Daily funding rate ∝ skew, capped: clamp((long − short) / skewScale × maxRate, ±maxRate).
    ///      Positive: longs pay.
    function _fundingRate(MarketParams storage m, MarketState storage st) private view returns (int256 rate) {
        int256 skew = int256(st.longOI) - int256(st.shortOI);
        int256 maxRate = int256(uint256(m.maxFundingRate));
        rate = skew * maxRate / int256(uint256(m.skewScale));
        if (rate > maxRate) rate = maxRate;
        if (rate < -maxRate) rate = -maxRate;
    }

    /// @dev Only the side the trade grew is checked: a trade that grows the smaller side reduces the
    ///      pool's exposure and stays allowed even when the other side is over a shrunken cap.
    function _checkOpenInterest(uint256 marketId, MarketParams memory m, uint256 px, uint256 poolCapitalUsd, bool long)
        private
        view
    {
        MarketState storage st = _marketStates[marketId];
        uint256 oiUsd = (long ? st.longOI : st.shortOI).mulDivUp(px, WAD);
        uint256 capUsd = poolCapitalUsd.wMulDown(m.oiCapFraction);
        if (oiUsd > capUsd) revert OpenInterestCap(marketId, oiUsd, capUsd);
    }

    // =================================================================== internals: settlement

    function _changeSettlement(uint256 accountId, int256 delta) internal {
        int256 s = _settlement[accountId] + delta;
        _settlement[accountId] = s;
        emit SettlementChanged(accountId, delta, s);
    }

    /// @dev Moves value between the account's USDC margin and the pool until the settlement balance is as
    ///      close to zero as tokens allow: a positive S is paid by the pool into margin (rounded down, the
    ///      sub-unit rest stays as a claim); a negative S is paid from USDC margin to the pool (rounded up;
    ///      the overshoot of less than one token unit is kept by the protocol).
    function _settle(uint256 accountId) internal {
        int256 s = _settlement[accountId];
        if (s > 0) {
            uint256 amount = Math.min(uint256(s) / settlementScale, pool.capital());
            if (amount == 0) return;
            _changeSettlement(accountId, -(amount * settlementScale).toInt256());
            pool.pay(address(vault), amount);
            vault.engineCreditMargin(accountId, settlementAsset, amount);
        } else if (s < 0) {
            uint256 owed = uint256(-s).mulDivUp(1, settlementScale);
            uint256 amount = Math.min(owed, vault.marginOf(accountId, settlementAsset));
            if (amount == 0) return;
            int256 delta = amount == owed ? -s : (amount * settlementScale).toInt256();
            _changeSettlement(accountId, delta);
            vault.engineDebitMargin(accountId, settlementAsset, amount, address(pool));
        }
    }

    // =================================================================== internals: access

    function _requireAuthorized(uint256 accountId) private view {
        if (!vault.isAuthorized(accountId, msg.sender)) revert NotAuthorized(accountId, msg.sender);
    }

    function _requireMarket(uint256 marketId) private view {
        if (marketId >= _markets.length) revert UnknownMarket(marketId);
    }
}
