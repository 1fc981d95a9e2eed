// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title IVault
/// @notice Custody of every collateral token, and the account registry. Served by the MarginEngine at its own
///         address (the engine holds every token: collateral, LP capital, insurance), so a rebalance, a trade or a
///         liquidation moves balances without a call or a token transfer.
/// @dev Amounts are in the token's native decimals. For every account and listed asset the vault keeps
///      two balances: `reserve` (idle, owner-withdrawable, never counted as margin, never seized, the
///      source of automatic top-ups) and `margin` (posted collateral, counted with its haircut in the
///      engine's equity, seizable on liquidation).
interface IVault {
    /// @notice Listing of one collateral token.
    /// @param index Position in `listedAssets()` (bit `index` of an account's margin mask).
    /// @param decimals The token's `decimals()`, read at listing.
    /// @param haircut Fraction of the oracle value counted as collateral, WAD, <= 1e18.
    struct AssetConfig {
        bool listed;
        uint8 index;
        uint8 decimals;
        uint64 haircut;
    }

    // ---------------------------------------------------------------- errors
    error NotAccountOwner(uint256 accountId, address caller);
    error NotAuthorized(uint256 accountId, address caller);
    error AccountNotFound(uint256 accountId);
    error AssetNotListed(address token);
    error AssetAlreadyListed(address token);
    error TooManyAssets(uint256 max);
    error InvalidDecimals(address token, uint8 decimals);
    error InvalidHaircut(address token, uint256 haircut);
    error ZeroAmount();
    error ZeroAddress();
    error InsufficientReserve(uint256 accountId, address token, uint256 available, uint256 requested);
    error InsufficientMargin(uint256 accountId, address token, uint256 available, uint256 requested);
    error TransferAmountMismatch(address token, uint256 expected, uint256 received);
    error UntrackedBalance(address token, uint256 balance, uint256 tracked);
    /// @notice Someone who is not the account's owner or operator tried to post a token other than the
    ///         settlement asset as its margin (collateral a stranger chooses could block its liquidation).
    error MarginAssetRestricted(uint256 accountId, address token, address caller);
    /// @notice A state change of the engine or the pool was re-entered (one lock guards both).
    error ReentrancyGuardReentrantCall();
    /// @notice Listing and haircuts are the engine owner's (Ownable2Step).
    error OwnableUnauthorizedAccount(address account);
    /// @notice A reserve or margin balance would reach 2^128 token units (each is stored in 128 bits).
    error BalanceTooLarge(uint256 accountId, address token, uint256 balance);

    // ---------------------------------------------------------------- events
    event AccountCreated(uint256 indexed accountId, address indexed owner);
    event OperatorSet(uint256 indexed accountId, address indexed operator, bool approved);
    event AssetListed(address indexed token, uint8 index, uint8 decimals, uint256 haircut);
    event HaircutSet(address indexed token, uint256 haircut);
    event Deposited(uint256 indexed accountId, address indexed token, address indexed from, uint256 amount);
    event Withdrawn(uint256 indexed accountId, address indexed token, address indexed to, uint256 amount);
    event MarginPosted(uint256 indexed accountId, address indexed token, uint256 amount);
    event MarginReleased(uint256 indexed accountId, address indexed token, uint256 amount);
    /// @notice Margin left the account: to the pool (`to` = the pool: losses, fees, funding) or to a collateral
    ///         buyer (`to` = the buyer, tokens sent).
    event MarginDebited(uint256 indexed accountId, address indexed token, address indexed to, uint256 amount);
    /// @notice The pool paid an account's profit into its margin.
    event MarginCredited(uint256 indexed accountId, address indexed token, uint256 amount);

    // ---------------------------------------------------------------- accounts
    /// @notice Creates an account owned by the caller. Ids start at 1 and increase by one.
    function createAccount() external returns (uint256 accountId);

    /// @notice Owner only (`NotAccountOwner`). Operators may do everything the owner may except
    ///         change operators.
    function setOperator(uint256 accountId, address operator, bool approved) external;

    function ownerOf(uint256 accountId) external view returns (address);
    function isOperator(uint256 accountId, address operator) external view returns (bool);
    /// @notice Owner or operator.
    function isAuthorized(uint256 accountId, address caller) external view returns (bool);
    function accountCount() external view returns (uint256);

    // ---------------------------------------------------------------- governance
    /// @notice Lists `token` as collateral. Reads and checks `decimals()` (1..18, `InvalidDecimals`),
    ///         haircut <= 1e18 (`InvalidHaircut`), at most MAX_ASSETS tokens (`TooManyAssets`).
    function listAsset(address token, uint256 haircut) external;
    function setHaircut(address token, uint256 haircut) external;

    // ---------------------------------------------------------------- user actions
    /// @notice Anyone may add collateral to any existing account's reserve. Credits the measured balance
    ///         change and reverts `TransferAmountMismatch` when it differs from `amount`
    ///         (fee-on-transfer and rebasing tokens are not supported).
    function deposit(uint256 accountId, address token, uint256 amount) external;

    /// @notice Deposits straight into margin (deposit + postMargin in one call). Anyone may add the
    ///         settlement asset (USDC) to any account; other tokens only the owner or an operator
    ///         (`MarginAssetRestricted`): a stranger's dust in a collateral whose oracle later fails must
    ///         never be able to stand in the way of the account's liquidation or rebalancing.
    function depositMargin(uint256 accountId, address token, uint256 amount) external;

    /// @notice Owner/operator only. Sends `amount` of the account's reserve to `to`.
    function withdraw(uint256 accountId, address token, uint256 amount, address to) external;

    /// @notice Owner/operator only. Moves reserve to margin.
    function postMargin(uint256 accountId, address token, uint256 amount) external;

    /// @notice Owner/operator only. Moves margin to reserve; reverts `IMarginEngine.BelowInitialMargin` when the
    ///         account would no longer meet initial margin (an account without positions or debt is not valued).
    function releaseMargin(uint256 accountId, address token, uint256 amount) external;

    // ---------------------------------------------------------------- views
    function reserveOf(uint256 accountId, address token) external view returns (uint256);
    function marginOf(uint256 accountId, address token) external view returns (uint256);
    /// @notice Bit i set iff the account has margin in `listedAssets()[i]`.
    function marginMask(uint256 accountId) external view returns (uint256);
    function assetConfig(address token) external view returns (AssetConfig memory);
    function listedAssets() external view returns (address[] memory);
    /// @notice Every listed token with its configuration, in listing order (one call for valuations).
    function listedAssetConfigs() external view returns (address[] memory tokens, AssetConfig[] memory configs);
    /// @notice The account's margin mask and its margin in every listed asset (0 where the bit is clear).
    function marginBalances(uint256 accountId) external view returns (uint256 mask, uint256[] memory amounts);
    /// @notice The tokens the account holds margin in (listing order), with the amounts and listings: everything
    ///         a valuation reads from the vault, in one call that touches only the assets the account holds.
    function marginState(uint256 accountId)
        external
        view
        returns (address[] memory tokens, uint256[] memory amounts, AssetConfig[] memory configs);
    /// @notice Tokens of `token` held and accounted for: Σ reserves + Σ margins over all accounts, plus, for the
    ///         settlement asset, the pool's balance (the solvency invariant's right side).
    function totalTracked(address token) external view returns (uint256);
    /// @notice The liquidity pool (its share token): LP capital is held here for it.
    function pool() external view returns (address);
    /// @notice The settlement asset strangers may post as margin.
    function settlementAsset() external view returns (address);
    /// @notice True while a state change of the engine or the pool is in progress in this transaction (one
    ///         transient lock guards both: a token callback that re-enters either reverts
    ///         `ReentrancyGuardReentrantCall`).
    function locked() external view returns (bool);
}
