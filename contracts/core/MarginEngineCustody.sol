// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {IPoolEngine} from "../interfaces/IPoolEngine.sol";
import {IVault} from "../interfaces/IVault.sol";
import {IOracleRouter} from "../interfaces/IOracleRouter.sol";
import {ILiquidityPool} from "../interfaces/ILiquidityPool.sol";
import {AccountLogic} from "../libraries/logic/AccountLogic.sol";
import {WAD} from "../libraries/Constants.sol";
import {IMarginEngine} from "../interfaces/IMarginEngine.sol";
import {EngineBase} from "./EngineBase.sol";

/// @title MarginEngineCustody
/// @notice The engine's cold custody functions (IVault: accounts, operators, listings, balance views) and the pool's
///         side of the engine (IPoolEngine: LP deposits and redemptions, insurance donations, the shared lock). The
///         hot custody doors (deposit, withdraw, post, release) are the engine's own. Only ever run through the
///         engine's router (engine → extension → here, delegatecall): called directly it acts on its own empty
///         storage and touches nothing of the engine's.
contract MarginEngineCustody is EngineBase {
    constructor(IOracleRouter oracle_, ILiquidityPool pool_, address gasAsset_, address owner_)
        EngineBase(oracle_, pool_, gasAsset_, owner_)
    {}

    modifier onlyPool() {
        if (msg.sender != pool) revert IPoolEngine.NotPool(msg.sender);
        _;
    }

    // =================================================================== accounts

    /// @notice See IVault.createAccount.
    function createAccount() external returns (uint256 accountId) {
        accountId = ++_s.accountCount;
        _s.owners[accountId] = msg.sender;
        emit IVault.AccountCreated(accountId, msg.sender);
    }

    /// @notice See IVault.setOperator.
    function setOperator(uint256 accountId, address operator, bool approved) external {
        address owner_ = _s.owners[accountId];
        if (owner_ == address(0)) revert IVault.AccountNotFound(accountId);
        if (msg.sender != owner_) revert IVault.NotAccountOwner(accountId, msg.sender);
        if (operator == address(0)) revert IVault.ZeroAddress();
        _s.operators[accountId][operator] = approved;
        emit IVault.OperatorSet(accountId, operator, approved);
    }

    function ownerOf(uint256 accountId) external view returns (address) {
        return _s.owners[accountId];
    }

    function isOperator(uint256 accountId, address operator) external view returns (bool) {
        return _s.operators[accountId][operator];
    }

    function isAuthorized(uint256 accountId, address caller) external view returns (bool) {
        return AccountLogic.isAuthorized(_s, accountId, caller);
    }

    function accountCount() external view returns (uint256) {
        return _s.accountCount;
    }

    // =================================================================== listings

    /// @notice See IVault.listAsset.
    function listAsset(address token, uint256 haircut) external onlyOwner {
        _listAsset(token, haircut);
    }

    /// @notice See IVault.setHaircut.
    function setHaircut(address token, uint256 haircut) external onlyOwner {
        uint256 slot = _s.assetSlot[token];
        if (slot == 0) revert IVault.AssetNotListed(token);
        if (haircut > WAD) revert IVault.InvalidHaircut(token, haircut);
        _s.assetList[slot - 1].haircut = uint64(haircut);
        emit IVault.HaircutSet(token, haircut);
    }

    function assetConfig(address token) public view returns (IVault.AssetConfig memory cfg) {
        uint256 slot = _s.assetSlot[token];
        if (slot == 0) return cfg;
        AccountLogic.Asset memory a = _s.assetList[slot - 1];
        return IVault.AssetConfig({listed: true, index: uint8(slot - 1), decimals: a.decimals, haircut: a.haircut});
    }

    function listedAssets() public view returns (address[] memory tokens) {
        uint256 n = _s.assetCount;
        tokens = new address[](n);
        for (uint256 i; i < n; ++i) {
            tokens[i] = _s.assetList[i].token;
        }
    }

    function listedAssetConfigs() external view returns (address[] memory tokens, IVault.AssetConfig[] memory configs) {
        tokens = listedAssets();
        configs = new IVault.AssetConfig[](tokens.length);
        for (uint256 i; i < tokens.length; ++i) {
            configs[i] = assetConfig(tokens[i]);
        }
    }

    // =================================================================== balances

    function reserveOf(uint256 accountId, address token) external view returns (uint256) {
        return _s.balances[accountId][token].reserve;
    }

    function marginOf(uint256 accountId, address token) external view returns (uint256) {
        return _s.balances[accountId][token].margin;
    }

    function marginMask(uint256 accountId) external view returns (uint256) {
        return _s.accounts[accountId].marginMask;
    }

    function marginBalances(uint256 accountId) external view returns (uint256 mask, uint256[] memory amounts) {
        mask = _s.accounts[accountId].marginMask;
        amounts = new uint256[](_s.assetCount);
        uint256 bits = mask;
        for (uint256 i; bits != 0; ++i) {
            if (bits & 1 != 0) amounts[i] = _s.balances[accountId][_s.assetList[i].token].margin;
            bits >>= 1;
        }
    }

    function marginState(uint256 accountId)
        external
        view
        returns (address[] memory tokens, uint256[] memory amounts, IVault.AssetConfig[] memory configs)
    {
        uint256 mask = _s.accounts[accountId].marginMask;
        uint256 n;
        for (uint256 bits = mask; bits != 0; bits &= bits - 1) ++n;
        tokens = new address[](n);
        amounts = new uint256[](n);
        configs = new IVault.AssetConfig[](n);
        n = 0;
        for (uint256 i; mask != 0; ++i) {
            if (mask & 1 != 0) {
                address token = _s.assetList[i].token;
                tokens[n] = token;
                amounts[n] = _s.balances[accountId][token].margin;
                configs[n] = assetConfig(token);
                ++n;
            }
            mask >>= 1;
        }
    }

    function totalTracked(address token) external view returns (uint256) {
        return _s.tracked[token];
    }

    function locked() external view returns (bool) {
        return _locked();
    }

    // =================================================================== the pool's side

    /// @notice See IPoolEngine.poolReceive.
    function poolReceive(address from, uint256 amount, bool insurance) external onlyPool {
        uint256 balance = IERC20(settlementAsset).balanceOf(address(this));
        uint256 tracked = _s.tracked[settlementAsset] + amount;
        if (balance < tracked) revert IVault.UntrackedBalance(settlementAsset, balance, tracked);
        _s.tracked[settlementAsset] = tracked;
        AccountLogic.PoolSlot memory p = _s.pool;
        p.balance = AccountLogic.fit(0, settlementAsset, p.balance + amount);
        if (insurance) {
            p.setAside += uint128(amount); // setAside + amount <= balance + amount, which fit above
            _s.insurance += amount;
        }
        _s.pool = p;
        emit IPoolEngine.PoolTransfer(from, amount, true, insurance);
    }

    /// @notice See IPoolEngine.poolPay.
    function poolPay(address to, uint256 amount) external onlyPool {
        uint256 available = AccountLogic.poolCapital(_s);
        if (amount > available) revert ILiquidityPool.InsufficientCapital(available, amount);
        _s.pool.balance -= uint128(amount); // amount <= capital <= balance
        AccountLogic.pushTokens(_s, settlementAsset, to, amount);
        emit IPoolEngine.PoolTransfer(to, amount, false, false);
    }

    function poolBalance() external view returns (uint256) {
        return _s.pool.balance;
    }

    function poolCapital() external view returns (uint256) {
        return AccountLogic.poolCapital(_s);
    }

    function insuranceBalance() external view returns (uint256) {
        return _s.insurance;
    }

    /// @notice See IPoolEngine.enterLock.
    function enterLock() external onlyPool {
        _enterLock();
    }

    function exitLock() external onlyPool {
        _exitLock();
    }

    // =================================================================== two-step orders (views and governance)

    /// @notice See IMarginEngine.order.
    function order(uint256 orderId) external view returns (IMarginEngine.Order memory) {
        (AccountLogic.OrderSlot memory o,,) = AccountLogic.pendingOrder(_s, orderId);
        uint256 deadline = o.requestedAt == 0 ? 0 : uint256(o.requestedAt) + o.lifetime;
        return IMarginEngine.Order(
            o.accountId, o.marketId, o.sizeDelta, o.acceptablePrice, o.requestedAt, o.afterRound, deadline, o.fee, o.reduceOnly
        );
    }

    /// @notice See IMarginEngine.pendingOrders.
    function pendingOrders(uint256 accountId) external view returns (uint256[] memory orderIds) {
        AccountLogic.PendingList storage pending = _s.pendingOrders[accountId];
        uint256 head = pending.head;
        orderIds = new uint256[](AccountLogic.pendingCount(head));
        for (uint256 i; i < orderIds.length; ++i) {
            orderIds[i] = AccountLogic.pendingAt(pending, head, i);
        }
    }

    function lastOrderId() external view returns (uint256) {
        return _s.orderBook.lastOrderId;
    }

    function orderFee() external view returns (uint256) {
        return _s.orderBook.fee;
    }

    function orderEscrow() external view returns (uint256) {
        return _s.orderBook.escrow;
    }

    /// @notice See IMarginEngine.pendingOpenInterest.
    function pendingOpenInterest(uint256 marketId) external view returns (uint256 long, uint256 short) {
        AccountLogic.PendingOI memory p = _s.pendingOI[marketId];
        // Stored + 1 from the market's creation (AccountLogic.PendingOI); 0 for a market that does not exist.
        return (p.long == 0 ? 0 : p.long - 1, p.short == 0 ? 0 : p.short - 1);
    }

    /// @notice See IMarginEngine.setOrderFee.
    function setOrderFee(uint256 fee) external onlyOwner {
        _setOrderFee(fee);
    }
}
