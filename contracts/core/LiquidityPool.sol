// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC4626} from "@openzeppelin/contracts/token/ERC20/extensions/ERC4626.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";

import {ILiquidityPool} from "../interfaces/ILiquidityPool.sol";
import {IPoolEngine} from "../interfaces/IPoolEngine.sol";
import {WAD} from "../libraries/Constants.sol";

/// @title LiquidityPool
/// @notice ERC-4626 USDC vault, counterparty of every position. See ILiquidityPool.
/// @dev The virtual-share offset (`_decimalsOffset`) makes the first-depositor (donation) attack cost the
///      attacker about 10^offset times what it could steal.
contract LiquidityPool is ILiquidityPool, ERC4626, Ownable2Step {
    using SafeERC20 for IERC20;

    /// @dev 10^6 virtual shares per virtual asset unit: an inflation attack on a 6-decimal asset costs
    ///      the attacker ~1e6 times the rounding it could steal.
    uint8 private constant DECIMALS_OFFSET = 6;

    address public engine;
    uint256 public insuranceBalance;
    /// @dev 10^(asset decimals): WAD USD → asset units, read once at construction.
    uint256 private immutable _assetUnit;

    constructor(IERC20 asset_, address owner_)
        ERC20("Ballast LP USDC", "blpUSDC")
        ERC4626(asset_)
        Ownable(owner_)
    {
        _assetUnit = 10 ** IERC20Metadata(address(asset_)).decimals();
    }

    modifier onlyEngine() {
        if (msg.sender != engine) revert NotEngine(msg.sender);
        _;
    }

    /// @inheritdoc ILiquidityPool
    function setEngine(address engine_) external onlyOwner {
        if (engine_ == address(0)) revert ZeroAddress();
        if (engine != address(0)) revert EngineAlreadySet(engine);
        engine = engine_;
        emit EngineSet(engine_);
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc ILiquidityPool
    function capital() public view returns (uint256) {
        return IERC20(asset()).balanceOf(address(this)) - insuranceBalance;
    }

    /// @notice LP capital less the traders' open profit. Open trader losses are not counted as assets
    ///         until they are paid (in the protocol's favour: LP shares are never priced off a receivable).
    function totalAssets() public view override returns (uint256) {
        uint256 cap = capital();
        if (engine == address(0)) return cap;
        int256 traderPnl = IPoolEngine(engine).openTraderPnl();
        if (traderPnl <= 0) return cap;
        // Trader profit is in WAD USD; the asset has 6 decimals: round the liability up.
        uint256 owed = Math.mulDiv(uint256(traderPnl), _assetUnit, WAD, Math.Rounding.Ceil);
        return owed >= cap ? 0 : cap - owed;
    }

    /// @inheritdoc ILiquidityPool
    function freeAssets() public view returns (uint256) {
        uint256 assets = totalAssets();
        if (engine == address(0)) return assets;
        uint256 backing = IPoolEngine(engine).requiredBacking();
        return backing >= assets ? 0 : assets - backing;
    }

    /// @notice ERC-4626 limit, further bounded by the assets not backing open interest.
    function maxWithdraw(address owner_) public view override returns (uint256) {
        return Math.min(super.maxWithdraw(owner_), freeAssets());
    }

    /// @notice ERC-4626 limit, further bounded by the assets not backing open interest (shares rounded down).
    function maxRedeem(address owner_) public view override returns (uint256) {
        return Math.min(super.maxRedeem(owner_), _convertToShares(freeAssets(), Math.Rounding.Floor));
    }

    function _decimalsOffset() internal pure override returns (uint8) {
        return DECIMALS_OFFSET;
    }

    // ------------------------------------------------------------------ insurance

    /// @inheritdoc ILiquidityPool
    function donateInsurance(uint256 amount) external {
        IERC20(asset()).safeTransferFrom(msg.sender, address(this), amount);
        insuranceBalance += amount;
        emit InsuranceDonated(msg.sender, amount);
    }

    // ------------------------------------------------------------------ engine only

    /// @inheritdoc ILiquidityPool
    function pay(address to, uint256 amount) external onlyEngine {
        uint256 available = capital();
        if (amount > available) revert InsufficientCapital(available, amount);
        IERC20(asset()).safeTransfer(to, amount);
        emit Paid(to, amount);
    }

    /// @inheritdoc ILiquidityPool
    function addInsurance(uint256 amount) external onlyEngine {
        uint256 available = capital();
        if (amount > available) revert InsufficientCapital(available, amount);
        insuranceBalance += amount;
        emit InsuranceAdded(amount, insuranceBalance);
    }

    /// @inheritdoc ILiquidityPool
    function coverBadDebt(uint256 accountId, uint256 amount) external onlyEngine returns (uint256 fromInsurance) {
        fromInsurance = Math.min(amount, insuranceBalance);
        insuranceBalance -= fromInsurance;
        emit BadDebtCovered(accountId, amount, fromInsurance, amount - fromInsurance);
    }
}
