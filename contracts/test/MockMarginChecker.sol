// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IMarginChecker} from "../interfaces/IMarginChecker.sol";

/// @notice Test double for the engine's release check: a switch decides whether releases pass, and
///         the last checked account is recorded.
contract MockMarginChecker is IMarginChecker {
    error BelowInitialMargin(uint256 accountId);

    bool public allow = true;
    uint256 public lastAccountId;
    uint256 public checks;

    function setAllow(bool allow_) external {
        allow = allow_;
    }

    /// @inheritdoc IMarginChecker
    function checkMarginRelease(uint256 accountId) external {
        if (!allow) revert BelowInitialMargin(accountId);
        lastAccountId = accountId;
        checks += 1;
    }
}
