// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title ILiquidityPool
/// @notice ERC-4626 vault of the settlement asset (USDC) that is the counterparty of every position and
///         the clearing house of the engine: it receives trader losses, trading fees and funding, pays
///         trader profits and keeper rewards, and keeps the insurance fund as a separate balance.
/// @dev Amounts are in the settlement asset's native decimals (6 for USDC).
interface ILiquidityPool {
    error NotEngine(address caller);
    error EngineAlreadySet(address engine);
    error ZeroAddress();
    error InsufficientCapital(uint256 available, uint256 requested);
    error WithdrawLocked(uint256 requested, uint256 available);

    event EngineSet(address indexed engine);
    event Paid(address indexed to, uint256 amount);
    event InsuranceAdded(uint256 amount, uint256 insuranceBalance);
    event InsuranceDonated(address indexed from, uint256 amount);
    /// @notice Bad debt written off: `fromInsurance` covered by the insurance fund, `socialised` borne
    ///         by LPs through the share price.
    event BadDebtCovered(uint256 indexed accountId, uint256 amount, uint256 fromInsurance, uint256 socialised);

    /// @notice Sets the margin engine once.
    function setEngine(address engine) external;

    /// @notice Settlement-asset balance that belongs to LPs, before netting open trader PnL:
    ///         balance − insurance fund.
    function capital() external view returns (uint256);

    /// @notice The insurance fund's balance.
    function insuranceBalance() external view returns (uint256);

    /// @notice Assets LPs may withdraw now: totalAssets − the backing open interest requires.
    function freeAssets() external view returns (uint256);

    /// @notice Anyone may add to the insurance fund.
    function donateInsurance(uint256 amount) external;

    // ---------------------------------------------------------------- engine only
    /// @notice Pays `amount` of LP capital to `to` (trader profits into the vault, keeper rewards).
    function pay(address to, uint256 amount) external;

    /// @notice Moves `amount` of LP capital into the insurance fund (liquidation penalties' share).
    function addInsurance(uint256 amount) external;

    /// @notice Writes off `amount` of an account's unpaid debt: the insurance fund covers what it can
    ///         (moved back to LP capital), LPs bear the rest. Returns the part the insurance fund covered.
    function coverBadDebt(uint256 accountId, uint256 amount) external returns (uint256 fromInsurance);
}
