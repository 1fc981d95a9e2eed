// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";

import {IVault} from "../interfaces/IVault.sol";
import {IMarginChecker} from "../interfaces/IMarginChecker.sol";
import {WAD, MAX_ASSETS, MAX_DECIMALS} from "../libraries/Constants.sol";

/// @title Vault
/// @notice Holds every collateral token of every account, and the account registry.
contract Vault is IVault, Ownable2Step {
    using SafeERC20 for IERC20;

    mapping(uint256 accountId => address) private _owners;
    mapping(uint256 accountId => mapping(address operator => bool)) private _operators;
    uint256 private _accountCount;

    mapping(address token => AssetConfig) private _assets;
    address[] private _listed;

    /// @dev An account's reserve and margin of one token share a slot (a top-up or release writes it once):
    ///      both in token units, each below 2^128 (`BalanceTooLarge` otherwise; the 18-decimal supply that could
    ///      reach it is 3.4e20 whole tokens).
    struct Balance {
        uint128 reserve;
        uint128 margin;
    }

    mapping(uint256 accountId => mapping(address token => Balance)) private _balances;
    mapping(uint256 accountId => uint256) private _marginMask;
    mapping(address token => uint256) private _tracked;

    address public engine;
    /// @inheritdoc IVault
    address public pool;
    /// @inheritdoc IVault
    address public settlementAsset;

    /// @dev Transient slot of the lock shared by vault, engine and pool (keccak256("ballast.lock") − 1).
    bytes32 private constant LOCK_SLOT = 0xe850772bd3ac1a3c59bb428daab196078f480db2cf8ea1cbac7c87f874fed0df;

    constructor(address owner_) Ownable(owner_) {}

    // ------------------------------------------------------------------ modifiers

    modifier nonReentrant() {
        _enter();
        _;
        _exit();
    }

    modifier onlyLockMember() {
        if (msg.sender != engine && msg.sender != pool) revert NotLockMember(msg.sender);
        _;
    }

    modifier onlyEngine() {
        if (msg.sender != engine) revert NotEngine(msg.sender);
        _;
    }

    modifier onlyAuthorized(uint256 accountId) {
        _requireAuthorized(accountId);
        _;
    }

    function _requireAuthorized(uint256 accountId) private view {
        address owner_ = _owners[accountId];
        if (owner_ == address(0)) revert AccountNotFound(accountId);
        if (msg.sender != owner_ && !_operators[accountId][msg.sender]) revert NotAuthorized(accountId, msg.sender);
    }

    function _requireListed(address token) private view returns (AssetConfig memory cfg) {
        cfg = _assets[token];
        if (!cfg.listed) revert AssetNotListed(token);
    }

    // ------------------------------------------------------------------ accounts

    /// @inheritdoc IVault
    function createAccount() external returns (uint256 accountId) {
        accountId = ++_accountCount;
        _owners[accountId] = msg.sender;
        emit AccountCreated(accountId, msg.sender);
    }

    /// @inheritdoc IVault
    function setOperator(uint256 accountId, address operator, bool approved) external {
        address owner_ = _owners[accountId];
        if (owner_ == address(0)) revert AccountNotFound(accountId);
        if (msg.sender != owner_) revert NotAccountOwner(accountId, msg.sender);
        if (operator == address(0)) revert ZeroAddress();
        _operators[accountId][operator] = approved;
        emit OperatorSet(accountId, operator, approved);
    }

    /// @inheritdoc IVault
    function ownerOf(uint256 accountId) external view returns (address) {
        return _owners[accountId];
    }

    /// @inheritdoc IVault
    function isOperator(uint256 accountId, address operator) external view returns (bool) {
        return _operators[accountId][operator];
    }

    /// @inheritdoc IVault
    function isAuthorized(uint256 accountId, address caller) external view returns (bool) {
        return _isAuthorized(accountId, caller);
    }

    function _isAuthorized(uint256 accountId, address caller) private view returns (bool) {
        address owner_ = _owners[accountId];
        return owner_ != address(0) && (caller == owner_ || _operators[accountId][caller]);
    }

    /// @inheritdoc IVault
    function accountCount() external view returns (uint256) {
        return _accountCount;
    }

    // ------------------------------------------------------------------ governance

    /// @inheritdoc IVault
    function listAsset(address token, uint256 haircut) external onlyOwner {
        if (token == address(0)) revert ZeroAddress();
        if (_assets[token].listed) revert AssetAlreadyListed(token);
        if (_listed.length >= MAX_ASSETS) revert TooManyAssets(MAX_ASSETS);
        if (haircut > WAD) revert InvalidHaircut(token, haircut);
        uint8 decimals = IERC20Metadata(token).decimals();
        if (decimals == 0 || decimals > MAX_DECIMALS) revert InvalidDecimals(token, decimals);
        uint8 index = uint8(_listed.length);
        _assets[token] = AssetConfig({listed: true, index: index, decimals: decimals, haircut: uint64(haircut)});
        _listed.push(token);
        emit AssetListed(token, index, decimals, haircut);
    }

    /// @inheritdoc IVault
    function setHaircut(address token, uint256 haircut) external onlyOwner {
        _requireListed(token);
        if (haircut > WAD) revert InvalidHaircut(token, haircut);
        _assets[token].haircut = uint64(haircut);
        emit HaircutSet(token, haircut);
    }

    /// @inheritdoc IVault
    function setEngine(address engine_) external onlyOwner {
        if (engine_ == address(0)) revert ZeroAddress();
        if (engine != address(0)) revert EngineAlreadySet(engine);
        engine = engine_;
        // A bare margin checker (tests, or a deployment without a pool) has neither: both stay unset.
        pool = _readAddress(engine_, "pool()");
        settlementAsset = _readAddress(engine_, "settlementAsset()");
        emit EngineSet(engine_);
    }

    // ------------------------------------------------------------------ shared lock

    /// @inheritdoc IVault
    function enterLock() external onlyLockMember {
        _enter();
    }

    /// @inheritdoc IVault
    function exitLock() external onlyLockMember {
        _exit();
    }

    /// @inheritdoc IVault
    function locked() public view returns (bool isLocked) {
        assembly ("memory-safe") {
            isLocked := tload(LOCK_SLOT)
        }
    }

    function _enter() private {
        if (locked()) revert ReentrancyGuardReentrantCall();
        assembly ("memory-safe") {
            tstore(LOCK_SLOT, 1)
        }
    }

    function _exit() private {
        assembly ("memory-safe") {
            tstore(LOCK_SLOT, 0)
        }
    }

    /// @dev `target.<signature>` as an address, or 0 when the call fails or returns something else.
    function _readAddress(address target, string memory signature) private view returns (address value) {
        (bool ok, bytes memory data) = target.staticcall(abi.encodeWithSignature(signature));
        if (ok && data.length == 32) value = abi.decode(data, (address));
    }

    // ------------------------------------------------------------------ user actions

    /// @inheritdoc IVault
    function deposit(uint256 accountId, address token, uint256 amount) external nonReentrant {
        _pull(accountId, token, amount);
        _addReserve(accountId, token, amount);
        emit Deposited(accountId, token, msg.sender, amount);
    }

    /// @inheritdoc IVault
    function depositMargin(uint256 accountId, address token, uint256 amount) external nonReentrant {
        if (token != settlementAsset && !_isAuthorized(accountId, msg.sender)) {
            revert MarginAssetRestricted(accountId, token, msg.sender);
        }
        AssetConfig memory cfg = _pull(accountId, token, amount);
        _addMargin(accountId, token, cfg.index, amount);
        emit Deposited(accountId, token, msg.sender, amount);
        emit MarginPosted(accountId, token, amount);
    }

    /// @inheritdoc IVault
    function withdraw(uint256 accountId, address token, uint256 amount, address to)
        external
        nonReentrant
        onlyAuthorized(accountId)
    {
        if (amount == 0) revert ZeroAmount();
        if (to == address(0)) revert ZeroAddress();
        _takeReserve(accountId, token, amount);
        _tracked[token] -= amount;
        IERC20(token).safeTransfer(to, amount);
        emit Withdrawn(accountId, token, to, amount);
    }

    /// @inheritdoc IVault
    function postMargin(uint256 accountId, address token, uint256 amount) external nonReentrant onlyAuthorized(accountId) {
        AssetConfig memory cfg = _requireListed(token);
        if (amount == 0) revert ZeroAmount();
        _move(accountId, token, cfg.index, amount, true);
        emit MarginPosted(accountId, token, amount);
    }

    /// @inheritdoc IVault
    function releaseMargin(uint256 accountId, address token, uint256 amount)
        external
        nonReentrant
        onlyAuthorized(accountId)
    {
        AssetConfig memory cfg = _requireListed(token);
        if (amount == 0) revert ZeroAmount();
        _move(accountId, token, cfg.index, amount, false);
        emit MarginReleased(accountId, token, amount);
        // State is final before the external call; the engine reverts the whole release if the account
        // would fall below initial margin.
        if (engine != address(0)) IMarginChecker(engine).checkMarginRelease(accountId);
    }

    // ------------------------------------------------------------------ engine only

    /// @inheritdoc IVault
    function engineMoveToMargin(uint256 accountId, address token, uint256 amount) external onlyEngine {
        AssetConfig memory cfg = _requireListed(token);
        _move(accountId, token, cfg.index, amount, true);
        emit MarginPosted(accountId, token, amount);
    }

    /// @inheritdoc IVault
    function engineMoveToReserve(uint256 accountId, address token, uint256 amount) external onlyEngine {
        AssetConfig memory cfg = _requireListed(token);
        _move(accountId, token, cfg.index, amount, false);
        emit MarginReleased(accountId, token, amount);
    }

    /// @inheritdoc IVault
    function engineDebitMargin(uint256 accountId, address token, uint256 amount, address to) external onlyEngine {
        AssetConfig memory cfg = _requireListed(token);
        if (to == address(0)) revert ZeroAddress();
        _takeMargin(accountId, token, cfg.index, amount);
        _tracked[token] -= amount;
        IERC20(token).safeTransfer(to, amount);
        emit MarginDebited(accountId, token, to, amount);
    }

    /// @inheritdoc IVault
    function engineCreditMargin(uint256 accountId, address token, uint256 amount) external onlyEngine {
        AssetConfig memory cfg = _requireListed(token);
        uint256 balance = IERC20(token).balanceOf(address(this));
        uint256 tracked = _tracked[token] + amount;
        if (balance < tracked) revert UntrackedBalance(token, balance, tracked);
        _tracked[token] = tracked;
        _addMargin(accountId, token, cfg.index, amount);
        emit MarginCredited(accountId, token, amount);
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc IVault
    function reserveOf(uint256 accountId, address token) external view returns (uint256) {
        return _balances[accountId][token].reserve;
    }

    /// @inheritdoc IVault
    function marginOf(uint256 accountId, address token) external view returns (uint256) {
        return _balances[accountId][token].margin;
    }

    /// @inheritdoc IVault
    function marginMask(uint256 accountId) external view returns (uint256) {
        return _marginMask[accountId];
    }

    /// @inheritdoc IVault
    function assetConfig(address token) external view returns (AssetConfig memory) {
        return _assets[token];
    }

    /// @inheritdoc IVault
    function listedAssets() external view returns (address[] memory) {
        return _listed;
    }

    /// @inheritdoc IVault
    function listedAssetConfigs() external view returns (address[] memory tokens, AssetConfig[] memory configs) {
        tokens = _listed;
        configs = new AssetConfig[](tokens.length);
        for (uint256 i; i < tokens.length; ++i) {
            configs[i] = _assets[tokens[i]];
        }
    }

    /// @inheritdoc IVault
    function marginBalances(uint256 accountId) external view returns (uint256 mask, uint256[] memory amounts) {
        mask = _marginMask[accountId];
        amounts = new uint256[](_listed.length);
        uint256 bits = mask;
        for (uint256 i; bits != 0; ++i) {
            if (bits & 1 != 0) amounts[i] = _balances[accountId][_listed[i]].margin;
            bits >>= 1;
        }
    }

    /// @inheritdoc IVault
    function marginState(uint256 accountId)
        external
        view
        returns (address[] memory tokens, uint256[] memory amounts, AssetConfig[] memory configs)
    {
        uint256 mask = _marginMask[accountId];
        uint256 n;
        for (uint256 bits = mask; bits != 0; bits &= bits - 1) ++n;
        tokens = new address[](n);
        amounts = new uint256[](n);
        configs = new AssetConfig[](n);
        n = 0;
        for (uint256 i; mask != 0; ++i) {
            if (mask & 1 != 0) {
                address token = _listed[i];
                tokens[n] = token;
                amounts[n] = _balances[accountId][token].margin;
                configs[n] = _assets[token];
                ++n;
            }
            mask >>= 1;
        }
    }

    /// @inheritdoc IVault
    function totalTracked(address token) external view returns (uint256) {
        return _tracked[token];
    }

    // ------------------------------------------------------------------ internals

    /// @dev Pulls `amount` from the caller and checks that exactly `amount` arrived.
    function _pull(uint256 accountId, address token, uint256 amount) private returns (AssetConfig memory cfg) {
        if (_owners[accountId] == address(0)) revert AccountNotFound(accountId);
        cfg = _requireListed(token);
        if (amount == 0) revert ZeroAmount();
        uint256 before = IERC20(token).balanceOf(address(this));
        IERC20(token).safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = IERC20(token).balanceOf(address(this)) - before;
        if (received != amount) revert TransferAmountMismatch(token, amount, received);
        _tracked[token] += amount;
    }

    function _takeReserve(uint256 accountId, address token, uint256 amount) private {
        Balance storage b = _balances[accountId][token];
        uint256 available = b.reserve;
        if (available < amount) revert InsufficientReserve(accountId, token, available, amount);
        unchecked {
            b.reserve = uint128(available - amount);
        }
    }

    function _addReserve(uint256 accountId, address token, uint256 amount) private {
        Balance storage b = _balances[accountId][token];
        b.reserve = _fit(accountId, token, b.reserve + amount);
    }

    function _addMargin(uint256 accountId, address token, uint8 index, uint256 amount) private {
        // The engine's moves and credits accept zero; an empty credit must not set the bit (set iff margin > 0).
        if (amount == 0) return;
        Balance storage b = _balances[accountId][token];
        b.margin = _fit(accountId, token, b.margin + amount);
        _marginMask[accountId] |= (1 << index);
    }

    function _takeMargin(uint256 accountId, address token, uint8 index, uint256 amount) private {
        Balance storage b = _balances[accountId][token];
        uint256 available = b.margin;
        if (available < amount) revert InsufficientMargin(accountId, token, available, amount);
        unchecked {
            b.margin = uint128(available - amount);
        }
        if (available == amount) _marginMask[accountId] &= ~(1 << index);
    }

    /// @dev Reserve → margin (`toMargin`) or margin → reserve, in one read and one write of the shared slot.
    function _move(uint256 accountId, address token, uint8 index, uint256 amount, bool toMargin) private {
        Balance memory b = _balances[accountId][token];
        (uint256 from, uint256 to) = toMargin ? (b.reserve, b.margin) : (b.margin, b.reserve);
        if (from < amount) {
            if (toMargin) revert InsufficientReserve(accountId, token, from, amount);
            revert InsufficientMargin(accountId, token, from, amount);
        }
        if (amount == 0) return;
        uint128 left = uint128(from - amount); // amount <= from, checked above
        uint128 grown = _fit(accountId, token, to + amount);
        (b.reserve, b.margin) = toMargin ? (left, grown) : (grown, left);
        _balances[accountId][token] = b;
        if (toMargin) _marginMask[accountId] |= (1 << index);
        else if (left == 0) _marginMask[accountId] &= ~(1 << index);
    }

    function _fit(uint256 accountId, address token, uint256 value) private pure returns (uint128) {
        if (value > type(uint128).max) revert BalanceTooLarge(accountId, token, value);
        return uint128(value);
    }
}
