// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

import {IMarginEngine} from "../../interfaces/IMarginEngine.sol";
import {IOracleRouter} from "../../interfaces/IOracleRouter.sol";
import {AccountLogic} from "./AccountLogic.sol";
import "../Constants.sol" as C;

/// @title GovernanceLogic
/// @notice The engine's owner-only parameter changes (run by delegatecall from the MarginEngine): a cold path,
///         kept out of the engine's bytecode. Every parameter is checked against its bound in Constants.sol and
///         `ParamOutOfBounds(name, value, min, max)` names the first one outside it.
library GovernanceLogic {
    uint256 private constant WAD = 1e18;

    /// @dev See `IMarginEngine.createMarket`.
    function createMarket(AccountLogic.Storage storage s, IMarginEngine.MarketParams calldata params)
        external
        returns (uint256 marketId)
    {
        if (s.marketCount >= C.MAX_MARKETS) revert IMarginEngine.TooManyMarkets(C.MAX_MARKETS);
        _checkMarketParams(params);
        marketId = s.marketCount++;
        s.markets[marketId] = _toSlot(params);
        s.marketStates[marketId].lastFundingTime = uint64(block.timestamp);
        s.pendingOI[marketId] = AccountLogic.PendingOI(1, 1); // nothing reserved, stored + 1 (AccountLogic.PendingOI)
        emit IMarginEngine.MarketCreated(marketId, params);
    }

    /// @dev See `IMarginEngine.setMarketParams`; the engine has checked the market exists.
    function setMarketParams(
        AccountLogic.Storage storage s,
        IOracleRouter oracle,
        uint256 marketId,
        IMarginEngine.MarketParams calldata params
    ) external {
        _checkMarketParams(params);
        if (params.asset != s.markets[marketId].asset) revert IMarginEngine.ParamOutOfBounds("asset", 0, 0, 0);
        // Funding accrued so far is charged at the old rate before the parameters change.
        (bool ok, uint256 px) = oracle.poke(params.asset);
        if (!ok) revert IMarginEngine.OracleUnhealthy(params.asset);
        AccountLogic.accrueFunding(s, marketId, px);
        s.markets[marketId] = _toSlot(params);
        AccountLogic.refreshFundingRate(s, marketId);
        emit IMarginEngine.MarketParamsSet(marketId, params);
    }

    /// @dev See `IMarginEngine.setRiskParams`.
    function setRiskParams(AccountLogic.Storage storage s, IMarginEngine.RiskParams calldata p) external {
        _bound("liquidationTargetRatio", p.liquidationTargetRatio, C.MIN_LIQ_TARGET, C.MAX_LIQ_TARGET);
        _bound("fullLiquidationHealth", p.fullLiquidationHealth, 0, WAD);
        _bound("liquidationPenalty", p.liquidationPenalty, 0, C.MAX_LIQ_PENALTY);
        _bound("keeperPenaltyShare", p.keeperPenaltyShare, 0, WAD);
        _bound("keeperReward", p.keeperReward, 0, C.MAX_KEEPER_REWARD);
        _bound("dustNotional", p.dustNotional, 0, C.MAX_DUST_NOTIONAL);
        _bound("collateralDiscount", p.collateralDiscount, 0, C.MAX_COLLATERAL_DISCOUNT);
        _bound("volHorizon", p.volHorizon, C.MIN_VOL_HORIZON, C.MAX_VOL_HORIZON);
        s.risk = p;
        s.hot.keeperReward = uint80(p.keeperReward); // <= MAX_KEEPER_REWARD < 2^80, bounded above
        // sqrt(horizon / year), rounded up: the volatility term of the maintenance rate is a requirement.
        // <= sqrt(30 days / 365 days) WAD < 0.29e18: fits 64 bits (AccountLogic.HotParams).
        s.hot.sqrtHorizon =
            uint64(Math.sqrt(Math.mulDiv(uint256(p.volHorizon), WAD * WAD, C.SECONDS_PER_YEAR), Math.Rounding.Ceil));
        emit IMarginEngine.RiskParamsSet(p);
    }

    function _checkMarketParams(IMarginEngine.MarketParams calldata p) private pure {
        if (p.asset == address(0)) revert IMarginEngine.ZeroAddress();
        _bound("baseMMR", p.baseMMR, C.MIN_BASE_MMR, C.MAX_BASE_MMR);
        _bound("maxMMR", p.maxMMR, p.baseMMR, WAD);
        _bound("volK", p.volK, 0, C.MAX_VOL_K);
        _bound("sizeK", p.sizeK, 0, C.MAX_SIZE_K);
        _bound("imFactor", p.imFactor, C.MIN_IM_FACTOR, C.MAX_IM_FACTOR);
        _bound("feeRate", p.feeRate, 0, C.MAX_FEE_RATE);
        _bound("oiCapFraction", p.oiCapFraction, AccountLogic.NANO, C.MAX_OI_CAP_FRACTION); // > 0, in billionths
        _bound("maxFundingRate", p.maxFundingRate, 0, C.MAX_FUNDING_RATE);
        _bound("imVolFloor", p.imVolFloor, 0, C.MAX_IM_VOL_FLOOR);
        _bound("skewScale", p.skewScale, 1, type(uint128).max);
        _bound("oiCapUsd", p.oiCapUsd, C.MIN_OI_CAP_USD, C.MAX_OI_CAP_USD);
        // Stored in billionths (AccountLogic.MarketSlot): refuse what the slot could not keep exactly (never round).
        _nano("baseMMR", p.baseMMR);
        _nano("maxMMR", p.maxMMR);
        _nano("volK", p.volK);
        _nano("sizeK", p.sizeK);
        _nano("imFactor", p.imFactor);
        _nano("feeRate", p.feeRate);
        _nano("oiCapFraction", p.oiCapFraction);
        _nano("maxFundingRate", p.maxFundingRate);
        _nano("imVolFloor", p.imVolFloor);
    }

    function _nano(bytes32 name, uint256 value) private pure {
        if (value % AccountLogic.NANO != 0) revert IMarginEngine.ParamPrecision(name, value, AccountLogic.NANO);
    }

    /// @dev The checked parameters as stored: every fraction a whole number of billionths within its bound, so each
    ///      narrowing is exact (the widths are AccountLogic.MarketSlot's).
    function _toSlot(IMarginEngine.MarketParams calldata p) private pure returns (AccountLogic.MarketSlot memory) {
        uint256 n = AccountLogic.NANO;
        return AccountLogic.MarketSlot({
            asset: p.asset,
            baseMMR: uint32(p.baseMMR / n),
            maxMMR: uint32(p.maxMMR / n),
            sizeK: uint32(p.sizeK / n),
            volK: uint40(p.volK / n),
            imFactor: uint40(p.imFactor / n),
            feeRate: uint32(p.feeRate / n),
            oiCapFraction: uint40(p.oiCapFraction / n),
            maxFundingRate: uint32(p.maxFundingRate / n),
            imVolFloor: uint40(p.imVolFloor / n),
            skewScale: p.skewScale,
            oiCapUsd: uint96(p.oiCapUsd) // <= MAX_OI_CAP_USD = 2^96 − 1, bounded above
        });
    }

    function _bound(bytes32 name, uint256 value, uint256 min, uint256 max) private pure {
        if (value < min || value > max) revert IMarginEngine.ParamOutOfBounds(name, value, min, max);
    }
}
