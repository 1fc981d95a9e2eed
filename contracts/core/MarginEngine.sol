// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {IMarginEngine} from "../interfaces/IMarginEngine.sol";
import {IRebalancer} from "../interfaces/IRebalancer.sol";
import {IVault} from "../interfaces/IVault.sol";
import {IOracleRouter} from "../interfaces/IOracleRouter.sol";
import {ILiquidityPool} from "../interfaces/ILiquidityPool.sol";
import {AccountLogic} from "../libraries/logic/AccountLogic.sol";
import {LiquidationLogic} from "../libraries/logic/LiquidationLogic.sol";
import {TradeLogic} from "../libraries/logic/TradeLogic.sol";
import {RebalanceLogic} from "../libraries/logic/RebalanceLogic.sol";
import {EngineBase} from "./EngineBase.sol";

/// @title MarginEngine
/// @notice Cross-margin perpetual markets, account valuation, liquidation and built-in rebalancing (IMarginEngine and
///         IRebalancer, one address). This contract holds the state-changing doors; every other selector (governance,
///         views, `needsRebalance`, `checkUpkeep`) is served by `extension` through delegatecall on the same storage.
contract MarginEngine is EngineBase {
    using SafeCast for uint256;

    /// @notice The contract that serves the engine's cold functions (see IMarginEngine.extension).
    address public immutable extension;

    constructor(
        IVault vault_,
        IOracleRouter oracle_,
        ILiquidityPool pool_,
        address gasAsset_,
        address extension_,
        IRebalancer.FeeParams memory fee_,
        uint256 upkeepSize_,
        address owner_
    ) EngineBase(vault_, oracle_, pool_, gasAsset_, owner_) {
        // The extension runs on this storage with its own immutables: they must be this engine's.
        EngineBase ext = EngineBase(extension_);
        if (
            extension_.code.length == 0 || ext.vault() != vault_ || ext.oracle() != oracle_
                || ext.pool() != address(pool_) || ext.gasAsset() != gasAsset_
        ) revert IMarginEngine.ExtensionMismatch(extension_);
        extension = extension_;
        _setFeeParams(fee_);
        _setUpkeepSize(upkeepSize_);
    }

    /// @dev Every selector this contract does not define runs the extension's code on this storage. A router, not
    ///      logic: it forwards calldata and bubbles the result, nothing else.
    // solhint-disable-next-line no-complex-fallback
    fallback() external {
        address ext = extension;
        assembly ("memory-safe") {
            calldatacopy(0, 0, calldatasize())
            let ok := delegatecall(gas(), ext, 0, calldatasize(), 0, 0)
            returndatacopy(0, 0, returndatasize())
            if iszero(ok) { revert(0, returndatasize()) }
            return(0, returndatasize())
        }
    }

    // =================================================================== trading

    /// @notice See IMarginEngine.modifyPosition.
    function modifyPosition(uint256 accountId, uint256 marketId, int256 sizeDelta, uint256 acceptablePrice)
        external
        nonReentrant
        tracksDebt(accountId)
    {
        _requireAuthorized(accountId);
        _requireMarket(marketId);
        TradeLogic.modifyPosition(_s, _env(), accountId, marketId, sizeDelta, acceptablePrice, paused);
    }

    /// @notice See IMarginEngine.settle.
    function settle(uint256 accountId) external nonReentrant tracksDebt(accountId) {
        AccountLogic.Env memory env = _env();
        AccountLogic.settle(_s, env, accountId);
        AccountLogic.writeOffIfEmpty(_s, env, accountId);
    }

    /// @notice See IMarginChecker.checkMarginRelease.
    /// @dev Runs inside the vault's `releaseMargin`, which holds the shared lock. An account with no position
    ///      and no debt needs no price at all (Promise 6: it can always take everything out).
    function checkMarginRelease(uint256 accountId) external {
        if (msg.sender != address(vault)) revert IMarginEngine.NotVault(msg.sender);
        if (_s.accounts[accountId].positionMask == 0 && _s.accounts[accountId].settlement >= 0) return;
        AccountLogic.Ctx memory ctx = AccountLogic.newCtx(_env());
        AccountLogic.pokeAccount(_s, ctx, accountId);
        IMarginEngine.AccountState memory s = AccountLogic.valuation(_s, ctx, accountId);
        if (s.equity < s.initialMargin.toInt256()) {
            revert IMarginEngine.BelowInitialMargin(accountId, s.equity, s.initialMargin);
        }
    }

    /// @notice See IMarginEngine.pokeAccount.
    function pokeAccount(uint256 accountId) external {
        AccountLogic.pokeAccount(_s, AccountLogic.newCtx(_env()), accountId);
    }

    // =================================================================== liquidation

    /// @notice See IMarginEngine.liquidate.
    function liquidate(uint256 accountId) external nonReentrant tracksDebt(accountId) returns (uint256 fraction) {
        return LiquidationLogic.liquidate(_s, _env(), accountId);
    }

    /// @notice See IMarginEngine.buyCollateral.
    function buyCollateral(uint256 accountId, address token, uint256 repay, uint256 minAmountOut)
        external
        nonReentrant
        tracksDebt(accountId)
        returns (uint256 amountOut)
    {
        return LiquidationLogic.buyCollateral(_s, _env(), accountId, token, repay, minAmountOut);
    }

    // =================================================================== rebalancing

    /// @notice See IRebalancer.rebalance.
    function rebalance(uint256 accountId)
        external
        nonReentrant
        tracksDebt(accountId)
        returns (uint8 action, uint256 feeUsd)
    {
        return RebalanceLogic.rebalance(_s, _env(), accountId, msg.sender);
    }

    /// @notice See IRebalancer.rebalanceBatch.
    function rebalanceBatch(uint256[] calldata accountIds) external nonReentrant returns (uint256 rebalanced) {
        return RebalanceLogic.rebalanceBatch(_s, _env(), accountIds, msg.sender);
    }

    /// @notice See IRebalancer.performUpkeep: rebalances the accounts `checkUpkeep` found, re-validating each.
    function performUpkeep(bytes calldata performData) external nonReentrant {
        // Automation calls through a forwarder that cannot claim: fees go to the owner's recipient.
        address recipient = _s.upkeepFeeRecipient;
        RebalanceLogic.rebalanceBatch(
            _s, _env(), abi.decode(performData, (uint256[])), recipient == address(0) ? msg.sender : recipient
        );
    }

    // =================================================================== keeper rewards

    /// @notice See IMarginEngine.claimKeeperRewards.
    function claimKeeperRewards(address to) external nonReentrant returns (uint256 amount) {
        if (to == address(0)) revert IMarginEngine.ZeroAddress();
        amount = _s.keeperRewards[msg.sender];
        if (amount == 0) revert IMarginEngine.NothingToClaim(msg.sender);
        _s.keeperRewards[msg.sender] = 0;
        _s.totalKeeperRewards -= amount;
        // The pool holds the tokens (no longer counted apart from LP capital once the total is lowered).
        ILiquidityPool(pool).pay(to, amount);
        emit IMarginEngine.KeeperRewardsClaimed(msg.sender, to, amount);
    }

    /// @notice See IMarginEngine.keeperRewardsOf.
    function keeperRewardsOf(address keeper) external view returns (uint256) {
        return _s.keeperRewards[keeper];
    }

    /// @notice See IMarginEngine.totalKeeperRewards. Here, not in the extension: the pool reads it on every
    ///         `capital()`, which a trade's open-interest check and a liquidation's insurance share call.
    function totalKeeperRewards() external view returns (uint256) {
        return _s.totalKeeperRewards;
    }
}
