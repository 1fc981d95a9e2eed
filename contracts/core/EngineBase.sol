// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC4626} from "@openzeppelin/contracts/interfaces/IERC4626.sol";
import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";

import {IMarginEngine} from "../interfaces/IMarginEngine.sol";
import {IRebalancer} from "../interfaces/IRebalancer.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {IVault} from "../interfaces/IVault.sol";
import {IOracleRouter} from "../interfaces/IOracleRouter.sol";
import {ILiquidityPool} from "../interfaces/ILiquidityPool.sol";
import {AccountLogic} from "../libraries/logic/AccountLogic.sol";
import {
    WAD,
    MAX_ASSETS,
    MAX_DECIMALS,
    MAX_REBALANCE_FEE,
    MAX_REBALANCE_GAS_UNITS,
    MAX_UPKEEP_SIZE,
    MAX_ORDER_FEE_USD
} from "../libraries/Constants.sol";

/// @title EngineBase
/// @notice What the MarginEngine and its facets (extension, custody) share: the immutables (both are built with the same ones, which
///         the engine checks) and the storage layout. The engine runs the extension's code by delegatecall, so both
///         read and write this one storage; nothing may be declared in either contract outside this base.
abstract contract EngineBase is Ownable2Step {
    IOracleRouter public immutable oracle;
    /// @notice The LiquidityPool (its share token), counterparty of every position; its tokens are held here.
    address public immutable pool;
    /// @notice The pool's asset (USDC): markets settle in it and it counts as exactly 1 USD.
    address public immutable settlementAsset;
    /// @notice Asset whose USD price converts gas into the rebalance keeper fee (WETH on Ethereum and its rollups).
    address public immutable gasAsset;
    /// @dev 10^(18 − settlement decimals): WAD USD per settlement-token unit.
    uint256 internal immutable settlementScale;

    /// @dev Every storage variable the `*Logic` libraries use (AccountLogic.Storage).
    AccountLogic.Storage internal _s;
    address public guardian;
    bool public paused;

    /// @dev Transient slot of the lock the engine's doors and the pool share (keccak256("ballast.lock") − 1).
    bytes32 private constant LOCK_SLOT = 0xe850772bd3ac1a3c59bb428daab196078f480db2cf8ea1cbac7c87f874fed0df;

    constructor(IOracleRouter oracle_, ILiquidityPool pool_, address gasAsset_, address owner_) Ownable(owner_) {
        if (address(oracle_) == address(0) || address(pool_) == address(0) || gasAsset_ == address(0)) {
            revert IMarginEngine.ZeroAddress();
        }
        oracle = oracle_;
        pool = address(pool_);
        gasAsset = gasAsset_;
        address usdc = IERC4626(address(pool_)).asset();
        settlementAsset = usdc;
        uint8 decimals = IERC20Metadata(usdc).decimals();
        if (decimals == 0 || decimals > MAX_DECIMALS) revert IVault.InvalidDecimals(usdc, decimals);
        settlementScale = 10 ** (18 - decimals);
    }

    /// @dev One transient lock guards every state change of the engine and the pool: a token callback during any
    ///      of them cannot re-enter either.
    modifier nonReentrant() {
        _enterLock();
        _;
        _exitLock();
    }

    /// @dev The router of a fallback: runs `facet`'s code on this storage with this calldata and caller, and bubbles
    ///      its result or revert. Nothing else.
    function _delegate(address facet) internal {
        assembly ("memory-safe") {
            calldatacopy(0, 0, calldatasize())
            let ok := delegatecall(gas(), facet, 0, calldatasize(), 0, 0)
            returndatacopy(0, 0, returndatasize())
            if iszero(ok) { revert(0, returndatasize()) }
            return(0, returndatasize())
        }
    }

    function _locked() internal view returns (bool isLocked) {
        assembly ("memory-safe") {
            isLocked := tload(LOCK_SLOT)
        }
    }

    function _enterLock() internal {
        if (_locked()) revert IVault.ReentrancyGuardReentrantCall();
        assembly ("memory-safe") {
            tstore(LOCK_SLOT, 1)
        }
    }

    function _exitLock() internal {
        assembly ("memory-safe") {
            tstore(LOCK_SLOT, 0)
        }
    }

    /// @dev Keeps `totalDebtUsd` = Σ max(0, −settlement) across a call that can change one account's settlement
    ///      balance: one comparison at the end of the call, a store only when the debt changed.
    modifier tracksDebt(uint256 accountId) {
        int256 before = _s.accounts[accountId].settlement;
        _;
        AccountLogic.trackDebt(_s, accountId, before);
    }

    function _env() internal view returns (AccountLogic.Env memory) {
        return AccountLogic.Env(oracle, pool, settlementAsset, settlementScale, gasAsset);
    }

    /// @dev Owner or operator (`NotAuthorized`, also for an id never created).
    function _requireAuthorized(uint256 accountId) internal view {
        if (!AccountLogic.isAuthorized(_s, accountId, msg.sender)) {
            revert IMarginEngine.NotAuthorized(accountId, msg.sender);
        }
    }

    /// @dev The custody doors' check: `AccountNotFound` for an id never created, then owner or operator.
    function _requireAccountAuthorized(uint256 accountId) internal view {
        if (_s.owners[accountId] == address(0)) revert IVault.AccountNotFound(accountId);
        _requireAuthorized(accountId);
    }

    /// @dev Lists `token` at the next index: decimals read and checked (1..18), haircut <= 1e18, at most MAX_ASSETS.
    function _listAsset(address token, uint256 haircut) internal {
        if (token == address(0)) revert IVault.ZeroAddress();
        if (_s.assetSlot[token] != 0) revert IVault.AssetAlreadyListed(token);
        uint256 index = _s.assetCount;
        if (index >= MAX_ASSETS) revert IVault.TooManyAssets(MAX_ASSETS);
        if (haircut > WAD) revert IVault.InvalidHaircut(token, haircut);
        uint8 decimals = IERC20Metadata(token).decimals();
        if (decimals == 0 || decimals > MAX_DECIMALS) revert IVault.InvalidDecimals(token, decimals);
        _s.assetList[index] = AccountLogic.Asset(token, decimals, uint64(haircut));
        _s.assetSlot[token] = index + 1;
        _s.assetCount = index + 1;
        emit IVault.AssetListed(token, uint8(index), decimals, haircut);
    }

    function _requireMarket(uint256 marketId) internal view {
        if (marketId >= _s.marketCount) revert IMarginEngine.UnknownMarket(marketId);
    }

    function _setFeeParams(IRebalancer.FeeParams memory p) internal {
        if (p.baseFeeUsd > MAX_REBALANCE_FEE || p.gasUnits > MAX_REBALANCE_GAS_UNITS) {
            revert IRebalancer.FeeParamsOutOfBounds(p.baseFeeUsd, p.gasUnits);
        }
        _s.hot.baseFeeUsd = uint80(p.baseFeeUsd); // <= MAX_REBALANCE_FEE < 2^80, checked above
        _s.hot.gasUnits = p.gasUnits;
        emit IRebalancer.FeeParamsSet(p);
    }

    /// @dev The execution fee of new orders, settlement-token units, at most MAX_ORDER_FEE_USD (`OrderFeeTooHigh`).
    function _setOrderFee(uint256 fee) internal {
        uint256 max = MAX_ORDER_FEE_USD / settlementScale;
        if (fee > max) revert IMarginEngine.OrderFeeTooHigh(fee, max);
        _s.orderBook.fee = uint72(fee); // <= MAX_ORDER_FEE_USD / scale <= 1e20 < 2^72 (an order stores it in 72 bits)
        emit IMarginEngine.OrderFeeSet(fee);
    }

    function _setUpkeepSize(uint256 size) internal {
        if (size == 0 || size > MAX_UPKEEP_SIZE) revert IRebalancer.UpkeepSizeOutOfBounds(size, MAX_UPKEEP_SIZE);
        _s.upkeepSize = size;
        emit IRebalancer.UpkeepSizeSet(size);
    }
}
