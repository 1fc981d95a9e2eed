// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {IMarginEngine} from "../interfaces/IMarginEngine.sol";
import {IRebalancer} from "../interfaces/IRebalancer.sol";
import {IVault} from "../interfaces/IVault.sol";
import {MarginEngineExtension} from "./MarginEngineExtension.sol";
import {IOracleRouter} from "../interfaces/IOracleRouter.sol";
import {ILiquidityPool} from "../interfaces/ILiquidityPool.sol";
import {AccountLogic} from "../libraries/logic/AccountLogic.sol";
import {LiquidationLogic} from "../libraries/logic/LiquidationLogic.sol";
import {TradeLogic} from "../libraries/logic/TradeLogic.sol";
import {RebalanceLogic} from "../libraries/logic/RebalanceLogic.sol";
import {PlanLogic} from "../libraries/logic/PlanLogic.sol";
import {EngineBase} from "./EngineBase.sol";
import {WadMath} from "../libraries/WadMath.sol";

/// @title MarginEngine
/// @notice Cross-margin perpetual markets, account valuation, liquidation and built-in rebalancing (IMarginEngine and
///         IRebalancer, one address). This contract holds the state-changing doors; every other selector (governance,
///         views, `needsRebalance`, `checkUpkeep`) is served by `extension` through delegatecall on the same storage.
contract MarginEngine is EngineBase {
    using SafeCast for uint256;
    using WadMath for uint256;

    /// @notice The contract that serves the engine's cold functions (see IMarginEngine.extension).
    address public immutable extension;

    /// @param settlementHaircut The settlement asset's haircut (WAD): it is listed first, at index 0.
    /// @param orderFee_ Execution fee of a two-step order, settlement-token units (`setOrderFee`).
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
    ) EngineBase(oracle_, pool_, gasAsset_, owner_) {
        // The facets run on this storage with their own immutables: they must be this engine's.
        if (!_sameImmutables(extension_)) revert IMarginEngine.ExtensionMismatch(extension_);
        address custody = MarginEngineExtension(extension_).custody();
        if (!_sameImmutables(custody)) revert IMarginEngine.ExtensionMismatch(custody);
        extension = extension_;
        _listAsset(settlementAsset, settlementHaircut); // index 0: AccountLogic.SETTLEMENT_INDEX
        _setFeeParams(fee_);
        _setUpkeepSize(upkeepSize_);
        _setOrderFee(orderFee_);
    }

    function _sameImmutables(address facet) private view returns (bool) {
        if (facet.code.length == 0) return false;
        EngineBase f = EngineBase(facet);
        return f.oracle() == oracle && f.pool() == pool && f.gasAsset() == gasAsset;
    }

    /// @dev Every selector this contract does not define runs the extension's code on this storage. A router, not
    ///      logic: it forwards calldata and bubbles the result, nothing else.
    fallback() external {
        _delegate(extension);
    }

    // =================================================================== custody (IVault)

    /// @notice See IVault.deposit.
    function deposit(uint256 accountId, address token, uint256 amount) external nonReentrant {
        _pull(accountId, token, amount);
        AccountLogic.Balance storage b = _s.balances[accountId][token];
        b.reserve = AccountLogic.fit(accountId, token, b.reserve + amount);
        emit IVault.Deposited(accountId, token, msg.sender, amount);
    }

    /// @notice See IVault.depositMargin.
    function depositMargin(uint256 accountId, address token, uint256 amount) external nonReentrant {
        if (token != settlementAsset && !AccountLogic.isAuthorized(_s, accountId, msg.sender)) {
            revert IVault.MarginAssetRestricted(accountId, token, msg.sender);
        }
        uint256 index = _pull(accountId, token, amount);
        AccountLogic.addMargin(_s, accountId, token, index, amount);
        emit IVault.Deposited(accountId, token, msg.sender, amount);
        emit IVault.MarginPosted(accountId, token, amount);
    }

    /// @notice See IVault.withdraw.
    function withdraw(uint256 accountId, address token, uint256 amount, address to) external nonReentrant {
        _requireAccountAuthorized(accountId);
        if (amount == 0) revert IVault.ZeroAmount();
        if (to == address(0)) revert IVault.ZeroAddress();
        AccountLogic.Balance storage b = _s.balances[accountId][token];
        uint256 available = b.reserve;
        if (available < amount) revert IVault.InsufficientReserve(accountId, token, available, amount);
        b.reserve = uint128(available - amount); // amount <= available < 2^128
        // Less reserve to top up from: a REDUCE of a policy account waits for a later round (README "Orders").
        AccountLogic.markOwnerAction(_s, accountId);
        AccountLogic.pushTokens(_s, token, to, amount);
        emit IVault.Withdrawn(accountId, token, to, amount);
    }

    /// @notice See IVault.postMargin.
    function postMargin(uint256 accountId, address token, uint256 amount) external nonReentrant {
        _ownerMove(accountId, token, amount, true);
    }

    /// @notice See IVault.releaseMargin: the account must still meet initial margin after it. An account with no
    ///         position and no debt needs no price at all (Promise 6: it can always take everything out).
    function releaseMargin(uint256 accountId, address token, uint256 amount) external nonReentrant {
        // An order that may add risk is judged on this margin at its fill: not moved under it (README "Orders").
        uint256 waiting = AccountLogic.pendingRiskOrder(_s, accountId);
        if (waiting != 0) revert IMarginEngine.OrderPending(accountId, waiting);
        _ownerMove(accountId, token, amount, false);
        AccountLogic.markOwnerAction(_s, accountId);
        AccountLogic.AccountSlot memory a = _s.accounts[accountId];
        if (a.positionMask == 0 && a.settlement >= 0) return;
        AccountLogic.Ctx memory ctx = AccountLogic.newCtx(_env());
        AccountLogic.pokeAccount(_s, ctx, accountId);
        IMarginEngine.AccountState memory st = AccountLogic.valuation(_s, ctx, accountId);
        if (st.equity < st.initialMargin.toInt256()) {
            revert IMarginEngine.BelowInitialMargin(accountId, st.equity, st.initialMargin);
        }
    }

    /// @dev The owner's (or an operator's) reserve → margin (`toMargin`) or margin → reserve move, with its event.
    function _ownerMove(uint256 accountId, address token, uint256 amount, bool toMargin) private {
        _requireAccountAuthorized(accountId);
        uint256 index = _listedIndex(token);
        if (amount == 0) revert IVault.ZeroAmount();
        AccountLogic.moveBalance(_s, accountId, token, index, amount, toMargin);
        if (toMargin) emit IVault.MarginPosted(accountId, token, amount);
        else emit IVault.MarginReleased(accountId, token, amount);
    }

    /// @dev Pulls exactly `amount` from the caller into an existing account's custody; returns the listing index.
    function _pull(uint256 accountId, address token, uint256 amount) private returns (uint256 index) {
        if (_s.owners[accountId] == address(0)) revert IVault.AccountNotFound(accountId);
        index = _listedIndex(token);
        if (amount == 0) revert IVault.ZeroAmount();
        AccountLogic.pullTokens(_s, token, amount);
    }

    function _listedIndex(address token) private view returns (uint256) {
        uint256 slot = _s.assetSlot[token];
        if (slot == 0) revert IVault.AssetNotListed(token);
        return slot - 1;
    }

    // =================================================================== trading

    /// @notice See IMarginEngine.requestOrder.
    function requestOrder(
        uint256 accountId,
        uint256 marketId,
        int256 sizeDelta,
        uint256 acceptablePrice,
        uint256 deadline,
        bool reduceOnly
    ) external nonReentrant returns (uint256 orderId) {
        _requireAuthorized(accountId);
        _requireMarket(marketId);
        uint256 px;
        (orderId, px) = TradeLogic.requestOrder(
            _s, _env(), TradeLogic.Request(accountId, marketId, sizeDelta, acceptablePrice, deadline, reduceOnly, paused)
        );
        if (!reduceOnly) _checkBacking(accountId, marketId, sizeDelta, px);
    }

    /// @dev An order that is not reduce-only must be backed when it is requested (README "Orders"): equity now ≥ the
    ///      initial margin of the whole account with |Δ| added to its position in the order's market, at the least
    ///      rates the markets can charge (every σ at its market's stress floor `imVolFloor`,
    ///      `AccountLogic.floorInitialMargin`), at current prices. The reservation of |Δ| of open interest on the
    ///      order's side (TradeLogic, finding N3) is thus backed by margin no position uses: on top of the position
    ///      (same side: what the fill leaves; against it: the other side's cap, which an order that never fills
    ///      would otherwise hold on the margin of the position it leaves open — review findings M1, M3). Other
    ///      positions can only shrink before the fill (one order that may add risk waits at a time), so at the
    ///      request's prices a same-side increase the fill would accept is never refused here. A flip or a reduction
    ///      asked for without `reduceOnly` needs the margin of |size| + |Δ|: reduce with `reduceOnly` (no backing).
    ///      Reverts `BelowInitialMargin(accountId, equity, required)`, or `OracleUnhealthy(asset)`. `px` is the
    ///      market's price as the request poked it (the router serves the same for the rest of the transaction).
    function _checkBacking(uint256 accountId, uint256 marketId, int256 sizeDelta, uint256 px) private {
        uint256 size = WadMath.abs(_s.positions[accountId][marketId].size) + WadMath.abs(sizeDelta); // both < 2^127
        AccountLogic.Ctx memory ctx = AccountLogic.newCtx(_env());
        AccountLogic.pokeAccount(_s, ctx, accountId);
        // Its volatilities are not needed: a market the account holds was loaded with them above, and the
        // backing prices the order's |Δ| at the σ floor. A market it does not hold takes the request's price.
        address asset = _s.markets[marketId].asset;
        (bool found,) = AccountLogic.lookup(ctx, asset);
        if (!found) AccountLogic.store(ctx, asset, px);
        int256 equity = AccountLogic.valuation(_s, ctx, accountId, false).equity;
        uint256 required = AccountLogic.floorInitialMargin(_s, ctx, accountId, marketId, size);
        if (equity < required.toInt256()) revert IMarginEngine.BelowInitialMargin(accountId, equity, required);
    }

    /// @notice See IMarginEngine.executeOrder.
    function executeOrder(uint256 orderId) external nonReentrant returns (bool filled) {
        (AccountLogic.OrderSlot memory o,, uint256 entry) = AccountLogic.pendingOrder(_s, orderId);
        if (o.requestedAt == 0) revert IMarginEngine.OrderNotFound(orderId);
        uint256 deadline = uint256(o.requestedAt) + o.lifetime;
        (IOracleRouter.RoundStatus status, uint256 px, uint256 at) = _fillRound(o, deadline);
        bytes4 reason;
        if (status == IOracleRouter.RoundStatus.NotYet) {
            // Once the deadline has passed no round can come in time: rounds carry the block time they are published at.
            if (block.timestamp <= deadline) revert IMarginEngine.OrderNotReady(orderId, o.afterRound);
            reason = IMarginEngine.OrderExpired.selector;
        } else if (status == IOracleRouter.RoundStatus.Unavailable) {
            reason = IMarginEngine.OrderRoundUnavailable.selector;
        } else if (at > deadline) {
            reason = IMarginEngine.OrderExpired.selector;
        } else if (px == 0) {
            reason = IMarginEngine.OrderPriceInvalid.selector;
        } else {
            // The fill in its own frame: a refusal named in `_cancelReason` rolls it back and cancels the order;
            // anything else (an unhealthy oracle, out of gas) reverts the whole call and the order stays pending.
            try this.fillOrder(o.accountId, o.marketId, o.sizeDelta, o.acceptablePrice, px, o.reduceOnly) {
                filled = true;
            } catch (bytes memory err) {
                reason = _cancelReason(err, block.timestamp > deadline);
            }
        }
        TradeLogic.closeOrder(_s, settlementAsset, entry, o, msg.sender);
        if (filled) emit IMarginEngine.OrderExecuted(orderId, o.accountId, msg.sender, px, at);
        else emit IMarginEngine.OrderCancelled(orderId, o.accountId, msg.sender, reason);
    }

    /// @dev The order's fill round (`OracleRouter.roundAfter`). A feed that cannot be read at all reverts the call
    ///      while the order can still fill in time, and counts as no round once the deadline has passed (the order
    ///      then expires: nothing waits for ever on a dead feed).
    function _fillRound(AccountLogic.OrderSlot memory o, uint256 deadline)
        private
        view
        returns (IOracleRouter.RoundStatus, uint256, uint256)
    {
        try oracle.roundAfter(_s.markets[o.marketId].asset, o.afterRound, o.requestedAt) returns (
            IOracleRouter.RoundStatus status, uint256 px, uint256 at
        ) {
            return (status, px, at);
        } catch (bytes memory err) {
            if (block.timestamp <= deadline) {
                assembly ("memory-safe") {
                    revert(add(err, 32), mload(err))
                }
            }
            return (IOracleRouter.RoundStatus.NotYet, 0, 0);
        }
    }

    /// @notice The fill of `executeOrder`, callable only by this contract (its own frame, so a refused fill rolls
    ///         back alone). Not part of IMarginEngine.
    function fillOrder(
        uint256 accountId,
        uint256 marketId,
        int256 sizeDelta,
        uint256 acceptablePrice,
        uint256 fillPx,
        bool reduceOnly
    ) external tracksDebt(accountId) {
        if (msg.sender != address(this)) revert IMarginEngine.NotAuthorized(accountId, msg.sender);
        TradeLogic.fill(_s, _env(), TradeLogic.Fill(accountId, marketId, sizeDelta, acceptablePrice, fillPx, reduceOnly, paused));
    }

    /// @dev The selector of a fill refusal that cancels an order: a rule of the trade judged at the fill round, which
    ///      no later call would judge differently; and, once the deadline has passed, an oracle that cannot price the
    ///      fill (`OrderExpired`: the order is not left waiting for ever). Any other failure is bubbled unchanged. No
    ///      caller can forge an `OracleUnhealthy` by starving the call of gas: a feed call that runs out inside the
    ///      router's try leaves the router 1/64 of its gas, far less than the fill still needs.
    function _cancelReason(bytes memory err, bool pastDeadline) private pure returns (bytes4 reason) {
        if (err.length >= 4) {
            reason = bytes4(err);
            if (pastDeadline && reason == IMarginEngine.OracleUnhealthy.selector) return IMarginEngine.OrderExpired.selector;
            if (
                reason == IMarginEngine.PriceNotAcceptable.selector || reason == IMarginEngine.BelowInitialMargin.selector
                    || reason == IMarginEngine.PositionIncreasePaused.selector
                    || reason == IMarginEngine.PositionTooLarge.selector
                    || reason == IMarginEngine.NothingToReduce.selector
            ) return reason;
        }
        assembly ("memory-safe") {
            revert(add(err, 32), mload(err))
        }
    }

    /// @notice See IMarginEngine.settle.
    function settle(uint256 accountId) external nonReentrant tracksDebt(accountId) {
        AccountLogic.Env memory env = _env();
        AccountLogic.settle(_s, env, accountId);
        AccountLogic.writeOffIfEmpty(_s, env, accountId);
    }

    /// @notice See IMarginEngine.pokeAccount.
    function pokeAccount(uint256 accountId) external {
        // Nothing is valued here: the markets' volatilities are not loaded.
        address unpriced = AccountLogic.pokeAccountPrices(_s, AccountLogic.newCtx(_env()), accountId, false);
        if (unpriced != address(0)) revert IMarginEngine.OracleUnhealthy(unpriced);
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
        // Opt-in and cooldown here, before the library is reached: the keeper that loses a same-block race for an
        // account pays for two slot reads and the revert, not for a call into the rebalancing code.
        IRebalancer.Status status = PlanLogic.gate(_s, accountId);
        if (status == IRebalancer.Status.NotOptedIn) revert IRebalancer.NotOptedIn(accountId);
        if (status != IRebalancer.Status.Ready) revert IRebalancer.NothingToRebalance(); // Cooldown
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
        _s.pool.setAside -= uint128(amount); // Σ keeperRewards <= setAside
        // Out of the pool's balance, where the credited rewards were set apart from LP capital. Unpaid account debts
        // can leave less there than was credited: the claim then waits for them to be paid.
        uint256 available = AccountLogic.poolCapital(_s);
        if (amount > available) revert ILiquidityPool.InsufficientCapital(available, amount);
        _s.pool.balance -= uint128(amount); // amount <= capital <= balance
        AccountLogic.pushTokens(_s, settlementAsset, to, amount);
        emit IMarginEngine.KeeperRewardsClaimed(msg.sender, to, amount);
    }

    /// @notice See IMarginEngine.keeperRewardsOf.
    function keeperRewardsOf(address keeper) external view returns (uint256) {
        return _s.keeperRewards[keeper];
    }

    /// @notice See IMarginEngine.totalKeeperRewards.
    function totalKeeperRewards() external view returns (uint256) {
        return _s.pool.setAside - _s.insurance; // setAside = insurance + Σ keeperRewards
    }
}
