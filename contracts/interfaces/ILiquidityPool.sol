// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title ILiquidityPool
/// @notice ERC-4626 share token of the settlement asset (USDC) that is the counterparty of every position: LPs'
///         capital receives trader losses, trading fees and funding and pays trader profits and keeper rewards. The
///         engine holds the pool's tokens and books all of it (IPoolEngine): capital, insurance fund, keeper rewards.
/// @dev Amounts are in the settlement asset's native decimals (6 for USDC).
interface ILiquidityPool {
    /// @notice Deposits, redemptions and donations need the engine, which holds the pool's tokens.
    error EngineNotSet();
    error EngineAlreadySet(address engine);
    error ZeroAddress();
    error InsufficientCapital(uint256 available, uint256 requested);
    /// @notice `owner` holds `locked` shares minted less than `holdPeriod` ago; they are free at `unlockAt`.
    error SharesLocked(address owner, uint256 locked, uint256 unlockAt);
    /// @notice An oracle of a market with open interest is invalid: the pool cannot be valued, so LP deposits
    ///         and redemptions wait for it.
    error PoolValuationUnavailable();
    /// @notice Only `receiver` itself may deposit for `receiver` while its shares are locked (until `unlockAt`).
    error ReceiverLocked(address receiver, uint256 unlockAt);
    error HoldPeriodOutOfBounds(uint256 value, uint256 min, uint256 max);

    event EngineSet(address indexed engine);
    event HoldPeriodSet(uint32 holdPeriod);
    /// @notice `owner`'s `shares` (all its shares still locked) are locked until `until`.
    event SharesLockedUntil(address indexed owner, uint256 shares, uint256 until);
    event InsuranceDonated(address indexed from, uint256 amount);

    /// @notice Sets the margin engine once: it holds the pool's tokens and the lock the pool shares.
    function setEngine(address engine) external;

    /// @notice Owner: seconds that shares minted by a deposit stay locked (MIN_HOLD_PERIOD .. MAX_HOLD_PERIOD,
    ///         `HoldPeriodOutOfBounds` outside).
    function setHoldPeriod(uint32 seconds_) external;

    /// @notice Seconds that shares minted by a deposit stay locked (default 15 minutes).
    function holdPeriod() external view returns (uint32);

    /// @notice `owner`'s shares still locked and when they unlock (0, 0 when none).
    function lockedShares(address owner) external view returns (uint256 shares, uint256 unlockAt);

    /// @notice Deposit (mint-side) valuation: capital − open trader profits + open trader losses, each market
    ///         side on its own, in asset units (profits and losses rounded up). `previewDeposit`/`previewMint`
    ///         price shares at it, so a new LP buys no share of losses that are already there. Reverts
    ///         `PoolValuationUnavailable` while the pool cannot be valued.
    function mintAssets() external view returns (uint256);

    /// @notice Settlement-asset balance that belongs to LPs, before netting open trader PnL:
    ///         balance − insurance fund − keeper rewards the engine credited and nobody claimed yet (0 if below).
    function capital() external view returns (uint256);

    /// @notice The insurance fund's balance.
    function insuranceBalance() external view returns (uint256);

    /// @notice Assets LPs may withdraw now: totalAssets − the backing open interest requires (0 while the pool
    ///         cannot be valued).
    function freeAssets() external view returns (uint256);

    /// @notice Anyone may add to the insurance fund.
    function donateInsurance(uint256 amount) external;
}
