// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IMarginEngine} from "../interfaces/IMarginEngine.sol";
import {IRebalancer} from "../interfaces/IRebalancer.sol";
import {IOracleRouter} from "../interfaces/IOracleRouter.sol";
import {ILiquidityPool} from "../interfaces/ILiquidityPool.sol";
import {TradeLogic} from "../libraries/logic/TradeLogic.sol";
import {MarginEngine} from "../core/MarginEngine.sol";

/// @title InstantFillEngine
/// @notice Test double: the MarginEngine plus the one-transaction fill it no longer offers (`modifyPosition`, at the
///         current oracle price). Unit tests of pricing, fees, funding, caps, margin, liquidation and rebalancing set
///         positions with it at a known price; the fill is the production `TradeLogic.fill`, with every rule of a
///         two-step fill. Never deployed by `deploy/`: an instant fill is the latency arbitrage two-step orders stop
///         (README "Orders"), and test/engine/Orders.test.ts covers the production path.
contract InstantFillEngine is MarginEngine {
    constructor(
        IOracleRouter oracle_,
        ILiquidityPool pool_,
        address gasAsset_,
        address extension_,
        uint256 settlementHaircut,
        IRebalancer.FeeParams memory fee_,
        uint256 upkeepSize_,
        uint256 orderFee_,
        address owner_
    ) MarginEngine(oracle_, pool_, gasAsset_, extension_, settlementHaircut, fee_, upkeepSize_, orderFee_, owner_) {}

    /// @notice Owner/operator: fills `sizeDelta` now at the current oracle price (`TradeLogic.fill` with no fill
    ///         round), refusing a buy above `acceptablePrice` and a sell below it.
    function modifyPosition(uint256 accountId, uint256 marketId, int256 sizeDelta, uint256 acceptablePrice)
        external
        nonReentrant
        tracksDebt(accountId)
    {
        _requireAuthorized(accountId);
        _requireMarket(marketId);
        TradeLogic.fill(_s, _env(), TradeLogic.Fill(accountId, marketId, sizeDelta, acceptablePrice, 0, false, paused));
    }
}

/// @notice The test engine's ABI for the tests: IMarginEngine plus the instant fill.
interface IInstantFillEngine is IMarginEngine {
    function modifyPosition(uint256 accountId, uint256 marketId, int256 sizeDelta, uint256 acceptablePrice) external;
}
