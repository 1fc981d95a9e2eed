// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title IMarginChecker
/// @notice The narrow seam through which the Vault asks the margin engine whether an account may
///         lose margin. Implemented by the MarginEngine.
interface IMarginChecker {
    /// @notice Called by the Vault after margin left `accountId` at the owner's request.
    ///         Must revert (with the engine's named error) unless the account's equity is still at or
    ///         above its initial margin requirement.
    function checkMarginRelease(uint256 accountId) external;
}
