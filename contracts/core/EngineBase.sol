// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC4626} from "@openzeppelin/contracts/interfaces/IERC4626.sol";
import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";

import {IMarginEngine} from "../interfaces/IMarginEngine.sol";
import {IRebalancer} from "../interfaces/IRebalancer.sol";
import {IVault} from "../interfaces/IVault.sol";
import {IOracleRouter} from "../interfaces/IOracleRouter.sol";
import {ILiquidityPool} from "../interfaces/ILiquidityPool.sol";
import {AccountLogic} from "../libraries/logic/AccountLogic.sol";
import {MAX_REBALANCE_FEE, MAX_REBALANCE_GAS_UNITS, MAX_UPKEEP_SIZE} from "../libraries/Constants.sol";

/// @title EngineBase
/// @notice What the MarginEngine and its extension share: the immutables (both are built with the same ones, which
///         the engine checks) and the storage layout. The engine runs the extension's code by delegatecall, so both
///         read and write this one storage; nothing may be declared in either contract outside this base.
abstract contract EngineBase is Ownable2Step {
    IVault public immutable vault;
    IOracleRouter public immutable oracle;
    /// @notice The LiquidityPool, counterparty of every position.
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

    constructor(IVault vault_, IOracleRouter oracle_, ILiquidityPool pool_, address gasAsset_, address owner_)
        Ownable(owner_)
    {
        if (
            address(vault_) == address(0) || address(oracle_) == address(0) || address(pool_) == address(0)
                || gasAsset_ == address(0)
        ) revert IMarginEngine.ZeroAddress();
        vault = vault_;
        oracle = oracle_;
        pool = address(pool_);
        gasAsset = gasAsset_;
        address usdc = IERC4626(address(pool_)).asset();
        settlementAsset = usdc;
        IVault.AssetConfig memory cfg = vault_.assetConfig(usdc);
        if (!cfg.listed) revert IMarginEngine.SettlementAssetNotListed(usdc);
        settlementScale = 10 ** (18 - cfg.decimals);
    }

    /// @dev The lock the vault, the engine and the pool share (held in the vault's transient storage): a token
    ///      callback during any of their state changes cannot re-enter any of them.
    modifier nonReentrant() {
        vault.enterLock();
        _;
        vault.exitLock();
    }

    /// @dev Keeps `totalDebtUsd` = Σ max(0, −settlement) across a call that can change one account's settlement
    ///      balance: one comparison at the end of the call, a store only when the debt changed.
    modifier tracksDebt(uint256 accountId) {
        int256 before = _s.accounts[accountId].settlement;
        _;
        AccountLogic.trackDebt(_s, accountId, before);
    }

    function _env() internal view returns (AccountLogic.Env memory) {
        return AccountLogic.Env(vault, oracle, ILiquidityPool(pool), settlementAsset, settlementScale, gasAsset);
    }

    function _requireAuthorized(uint256 accountId) internal view {
        if (!vault.isAuthorized(accountId, msg.sender)) revert IMarginEngine.NotAuthorized(accountId, msg.sender);
    }

    function _requireMarket(uint256 marketId) internal view {
        if (marketId >= _s.marketCount) revert IMarginEngine.UnknownMarket(marketId);
    }

    function _setFeeParams(IRebalancer.FeeParams memory p) internal {
        if (p.baseFeeUsd > MAX_REBALANCE_FEE || p.gasUnits > MAX_REBALANCE_GAS_UNITS) {
            revert IRebalancer.FeeParamsOutOfBounds(p.baseFeeUsd, p.gasUnits);
        }
        _s.hot.baseFeeUsd = p.baseFeeUsd;
        _s.hot.gasUnits = p.gasUnits;
        emit IRebalancer.FeeParamsSet(p);
    }

    function _setUpkeepSize(uint256 size) internal {
        if (size == 0 || size > MAX_UPKEEP_SIZE) revert IRebalancer.UpkeepSizeOutOfBounds(size, MAX_UPKEEP_SIZE);
        _s.upkeepSize = size;
        emit IRebalancer.UpkeepSizeSet(size);
    }
}
