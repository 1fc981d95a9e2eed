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
import {WAD, DEFAULT_HOLD_PERIOD, MIN_HOLD_PERIOD, MAX_HOLD_PERIOD} from "../libraries/Constants.sol";

/// @title LiquidityPool
/// @notice ERC-4626 USDC vault, counterparty of every position. See ILiquidityPool.
/// @dev Two valuations and a holding period keep LP round trips honest (README "Liquidity providers"):
///      - redemptions (and `totalAssets`, `convertTo*`) value the pool at capital − open trader profits, each
///        market side on its own, open losses never counted;
///      - deposits value it at capital − open profits + open losses: a new LP pays for the losses traders will
///        pay in, so a deposit just before a losing trader closes buys no share of that loss;
///      - minted shares are locked for `holdPeriod` (GLP's 15-minute cooldown): no deposit → price step →
///        redeem inside one transaction, block or flash loan.
///      The engine holds the tokens and books capital itself: tokens sent straight to the pool or the engine are
///      not capital, so the first-depositor (donation) attack has nothing to inflate; the virtual-share offset
///      (`_decimalsOffset`) stays as a second line.
contract LiquidityPool is ILiquidityPool, ERC4626, Ownable2Step {
    using SafeERC20 for IERC20;

    /// @dev 10^6 virtual shares per virtual asset unit: an inflation attack on a 6-decimal asset costs
    ///      the attacker ~1e6 times the rounding it could steal.
    uint8 private constant DECIMALS_OFFSET = 6;

    /// @dev Shares minted and not yet free, with the time they all become free.
    struct Lock {
        uint192 shares;
        uint64 until;
    }

    address public engine;
    /// @inheritdoc ILiquidityPool
    uint32 public holdPeriod = uint32(DEFAULT_HOLD_PERIOD);
    mapping(address owner => Lock) private _locks;
    /// @dev 10^(asset decimals): WAD USD → asset units, read once at construction.
    uint256 private immutable _assetUnit;

    constructor(IERC20 asset_, address owner_)
        ERC20("Ballast LP USDC", "blpUSDC")
        ERC4626(asset_)
        Ownable(owner_)
    {
        _assetUnit = 10 ** IERC20Metadata(address(asset_)).decimals();
    }

    /// @dev The engine's lock: a token callback during an LP action cannot re-enter the engine or the pool.
    modifier nonReentrant() {
        IPoolEngine e = _engine();
        e.enterLock();
        _;
        e.exitLock();
    }

    /// @inheritdoc ILiquidityPool
    function setEngine(address engine_) external onlyOwner {
        if (engine_ == address(0)) revert ZeroAddress();
        if (engine != address(0)) revert EngineAlreadySet(engine);
        engine = engine_;
        emit EngineSet(engine_);
    }

    /// @dev The engine, which holds the pool's tokens (`EngineNotSet` before it is set).
    function _engine() private view returns (IPoolEngine) {
        address e = engine;
        if (e == address(0)) revert EngineNotSet();
        return IPoolEngine(e);
    }

    /// @inheritdoc ILiquidityPool
    function setHoldPeriod(uint32 seconds_) external onlyOwner {
        if (seconds_ < MIN_HOLD_PERIOD || seconds_ > MAX_HOLD_PERIOD) {
            revert HoldPeriodOutOfBounds(seconds_, MIN_HOLD_PERIOD, MAX_HOLD_PERIOD);
        }
        holdPeriod = seconds_;
        emit HoldPeriodSet(seconds_);
    }

    // ------------------------------------------------------------------ valuations

    /// @inheritdoc ILiquidityPool
    function capital() public view returns (uint256) {
        address e = engine;
        return e == address(0) ? 0 : IPoolEngine(e).poolCapital();
    }

    /// @inheritdoc ILiquidityPool
    function insuranceBalance() external view returns (uint256) {
        address e = engine;
        return e == address(0) ? 0 : IPoolEngine(e).insuranceBalance();
    }

    /// @notice Redemption value: LP capital less the traders' open profits, per market side. Open trader losses
    ///         are not counted until they are paid (LP shares are never redeemed against a receivable).
    ///         Reverts `PoolValuationUnavailable` while a market with open interest has no valid price.
    function totalAssets() public view override returns (uint256) {
        (bool ok, uint256 profitUsd,,) = _exposure();
        if (!ok) revert PoolValuationUnavailable();
        return _redeemValue(profitUsd);
    }

    /// @inheritdoc ILiquidityPool
    function mintAssets() public view returns (uint256) {
        (bool ok, uint256 profitUsd, uint256 lossUsd,) = _exposure();
        if (!ok) revert PoolValuationUnavailable();
        return _mintValue(profitUsd, lossUsd);
    }

    /// @inheritdoc ILiquidityPool
    function freeAssets() public view returns (uint256) {
        (bool ok, uint256 profitUsd,, uint256 backing) = _exposure();
        if (!ok) return 0;
        uint256 assets = _redeemValue(profitUsd);
        return backing >= assets ? 0 : assets - backing;
    }

    /// @inheritdoc ILiquidityPool
    function lockedShares(address owner_) public view returns (uint256 shares, uint256 unlockAt) {
        Lock memory lock = _locks[owner_];
        if (block.timestamp >= lock.until) return (0, 0);
        return (lock.shares, lock.until);
    }

    // ------------------------------------------------------------------ ERC-4626 limits (never revert)

    /// @notice Unlimited while the pool can be valued; 0 while it cannot (deposits wait for the oracles).
    function maxDeposit(address) public view override returns (uint256) {
        (bool ok,,,) = _exposure();
        return ok ? type(uint256).max : 0;
    }

    /// @notice Unlimited while the pool can be valued; 0 while it cannot.
    function maxMint(address) public view override returns (uint256) {
        (bool ok,,,) = _exposure();
        return ok ? type(uint256).max : 0;
    }

    /// @notice What `owner_` can withdraw now: its unlocked shares' value, bounded by the assets not backing
    ///         open interest; 0 while the pool cannot be valued. Never reverts.
    function maxWithdraw(address owner_) public view override returns (uint256) {
        (bool ok, uint256 profitUsd,, uint256 backing) = _exposure();
        if (!ok) return 0;
        uint256 assets = _redeemValue(profitUsd);
        uint256 free = backing >= assets ? 0 : assets - backing;
        uint256 own = _toAssets(_unlockedShares(owner_), assets, Math.Rounding.Floor);
        return Math.min(own, free);
    }

    /// @notice Shares `owner_` can redeem now: unlocked, and worth no more than the assets not backing open
    ///         interest (rounded down); 0 while the pool cannot be valued. Never reverts.
    function maxRedeem(address owner_) public view override returns (uint256) {
        (bool ok, uint256 profitUsd,, uint256 backing) = _exposure();
        if (!ok) return 0;
        uint256 assets = _redeemValue(profitUsd);
        uint256 free = backing >= assets ? 0 : assets - backing;
        return Math.min(_unlockedShares(owner_), _toShares(free, assets, Math.Rounding.Floor));
    }

    // ------------------------------------------------------------------ ERC-4626 previews (exact)

    /// @notice Shares minted for `assets` at the mint valuation, rounded down (for the pool).
    function previewDeposit(uint256 assets) public view override returns (uint256) {
        return _toShares(assets, mintAssets(), Math.Rounding.Floor);
    }

    /// @notice Assets needed to mint `shares` at the mint valuation, rounded up (for the pool).
    function previewMint(uint256 shares) public view override returns (uint256) {
        return _toAssets(shares, mintAssets(), Math.Rounding.Ceil);
    }

    // previewWithdraw / previewRedeem: OpenZeppelin's, on `totalAssets` (the redemption valuation).

    // ------------------------------------------------------------------ ERC-4626 entry points

    function deposit(uint256 assets, address receiver) public override nonReentrant returns (uint256) {
        _requireValuation();
        return super.deposit(assets, receiver);
    }

    function mint(uint256 shares, address receiver) public override nonReentrant returns (uint256) {
        _requireValuation();
        return super.mint(shares, receiver);
    }

    function withdraw(uint256 assets, address receiver, address owner_) public override nonReentrant returns (uint256) {
        _requireValuation();
        _requireUnlocked(owner_, previewWithdraw(assets));
        return super.withdraw(assets, receiver, owner_);
    }

    function redeem(uint256 shares, address receiver, address owner_) public override nonReentrant returns (uint256) {
        _requireValuation();
        _requireUnlocked(owner_, shares);
        return super.redeem(shares, receiver, owner_);
    }

    function _decimalsOffset() internal pure override returns (uint8) {
        return DECIMALS_OFFSET;
    }

    /// @dev Shares minted by a deposit are locked for `holdPeriod`. The receiver's own deposit while its lock
    ///      runs adds to it and restarts it. Someone else may deposit for a receiver only while the receiver has
    ///      no running lock (`ReceiverLocked` otherwise): a stranger can never postpone the unlock of shares the
    ///      receiver already holds, and a JIT deposit routed through a second address still waits a full period.
    ///      A deposit that mints nothing leaves the lock alone.
    function _deposit(address caller, address receiver, uint256 assets, uint256 shares) internal override {
        (uint256 stillLocked, uint256 unlockAt) = lockedShares(receiver);
        if (caller != receiver && stillLocked != 0) revert ReceiverLocked(receiver, unlockAt);
        // OpenZeppelin's order (transfer in, then mint), with the tokens going straight to the engine.
        IERC20(asset()).safeTransferFrom(caller, engine, assets);
        _engine().poolReceive(caller, assets, false);
        _mint(receiver, shares);
        emit Deposit(caller, receiver, assets, shares);
        if (shares == 0) return;
        uint64 until = uint64(block.timestamp + holdPeriod);
        _locks[receiver] = Lock({shares: uint192(stillLocked + shares), until: until});
        emit SharesLockedUntil(receiver, stillLocked + shares, until);
    }

    /// @dev OpenZeppelin's order (burn, then transfer out), with the tokens paid by the engine.
    function _withdraw(address caller, address receiver, address owner_, uint256 assets, uint256 shares)
        internal
        override
    {
        if (caller != owner_) _spendAllowance(owner_, caller, shares);
        _burn(owner_, shares);
        _engine().poolPay(receiver, assets);
        emit Withdraw(caller, receiver, owner_, assets, shares);
    }

    /// @dev Locked shares cannot be transferred or burned (mints are not checked).
    function _update(address from, address to, uint256 value) internal override {
        if (from != address(0)) _requireUnlocked(from, value);
        super._update(from, to, value);
    }

    // ------------------------------------------------------------------ insurance

    /// @inheritdoc ILiquidityPool
    function donateInsurance(uint256 amount) external nonReentrant {
        IERC20(asset()).safeTransferFrom(msg.sender, engine, amount);
        _engine().poolReceive(msg.sender, amount, true);
        emit InsuranceDonated(msg.sender, amount);
    }

    // ------------------------------------------------------------------ internals

    function _exposure() private view returns (bool ok, uint256 profitUsd, uint256 lossUsd, uint256 backing) {
        if (engine == address(0)) return (true, 0, 0, 0);
        return IPoolEngine(engine).poolExposure();
    }

    function _requireValuation() private view {
        (bool ok,,,) = _exposure();
        if (!ok) revert PoolValuationUnavailable();
    }

    /// @dev capital − profits; profits (WAD USD) become a liability in asset units rounded up (for the pool).
    function _redeemValue(uint256 profitUsd) private view returns (uint256) {
        uint256 cap = capital();
        uint256 owed = Math.mulDiv(profitUsd, _assetUnit, WAD, Math.Rounding.Ceil);
        return owed >= cap ? 0 : cap - owed;
    }

    /// @dev capital − profits + losses; losses (WAD USD) count in asset units rounded up: a higher mint valuation
    ///      mints fewer shares (for the pool's existing LPs).
    function _mintValue(uint256 profitUsd, uint256 lossUsd) private view returns (uint256) {
        uint256 cap = capital() + Math.mulDiv(lossUsd, _assetUnit, WAD, Math.Rounding.Ceil);
        uint256 owed = Math.mulDiv(profitUsd, _assetUnit, WAD, Math.Rounding.Ceil);
        return owed >= cap ? 0 : cap - owed;
    }

    /// @dev OpenZeppelin's conversion at a given valuation (virtual offset included).
    function _toShares(uint256 assets, uint256 valuation, Math.Rounding rounding) private view returns (uint256) {
        return Math.mulDiv(assets, totalSupply() + 10 ** DECIMALS_OFFSET, valuation + 1, rounding);
    }

    function _toAssets(uint256 shares, uint256 valuation, Math.Rounding rounding) private view returns (uint256) {
        return Math.mulDiv(shares, valuation + 1, totalSupply() + 10 ** DECIMALS_OFFSET, rounding);
    }

    function _unlockedShares(address owner_) private view returns (uint256) {
        (uint256 locked_,) = lockedShares(owner_);
        uint256 balance = balanceOf(owner_);
        return balance > locked_ ? balance - locked_ : 0;
    }

    function _requireUnlocked(address owner_, uint256 shares) private view {
        (uint256 locked_, uint256 unlockAt) = lockedShares(owner_);
        if (locked_ != 0 && balanceOf(owner_) < locked_ + shares) revert SharesLocked(owner_, locked_, unlockAt);
    }
}
