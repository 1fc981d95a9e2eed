// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AggregatorV3Interface} from "@chainlink/contracts/src/v0.8/shared/interfaces/AggregatorV3Interface.sol";

/// @dev The v2 getters of an aggregator the proxy forwards.
interface IAggregatorV2Getters {
    function latestRound() external view returns (uint256);
    function latestAnswer() external view returns (int256);
    function latestTimestamp() external view returns (uint256);
}

/// @title ForkAggregatorProxy
/// @notice FORK REPLICA ONLY (lib/fork/replica.ts): a stand-in for Chainlink's EACAggregatorProxy, placed at the
///         mainnet proxy address (ETH/USD, BTC/USD) on a local replica of mainnet. Chainlink's published proxy is
///         Solidity 0.6 and its bytecode ships in no package this repository installs, so this is a re-implementation
///         in 0.8.28 of what the real proxy does for its readers and its owner:
///         - phase-aware round ids: `(phaseId << 64) | aggregatorRoundId`; `getRoundData` of any phase's round is
///           served by that phase's aggregator (`phaseAggregators`), `latestRoundData` by the current one;
///         - `aggregator()`, `phaseId()`, `phaseAggregators(id)`, `proposedAggregator()`, `decimals`,
///           `description`, `version` (the current aggregator's), the v2 getters (`latestAnswer`, `latestRound`,
///           `latestTimestamp`);
///         - `proposeAggregator` / `confirmAggregator` by the owner (the confirmed aggregator becomes phase
///           phaseId + 1), `proposedLatestRoundData` / `proposedGetRoundData` while a proposal is pending;
///         - two-step ownership (`transferOwnership`, `acceptOwnership`).
///         Not reproduced: the access controller (mainnet's is unset for these feeds: anyone reads), the earlier
///         phases' aggregators (the replica starts at the phase its data is numbered in; older phases have no
///         aggregator and their rounds revert), the real proxy's exact revert strings (custom errors here).
contract ForkAggregatorProxy is AggregatorV3Interface {
    error OnlyOwner(address caller);
    error OnlyPendingOwner(address caller);
    error InvalidProposedAggregator(address aggregator);
    error NoProposedAggregator();
    error NoAggregatorForPhase(uint16 phaseId);

    event OwnershipTransferRequested(address indexed from, address indexed to);
    event OwnershipTransferred(address indexed from, address indexed to);

    uint256 private constant PHASE_OFFSET = 64;

    address public owner;
    address public pendingOwner;
    uint16 public phaseId;
    AggregatorV3Interface private _current;
    AggregatorV3Interface public proposedAggregator;
    mapping(uint16 phaseId => AggregatorV3Interface aggregator) public phaseAggregators;

    /// @param aggregator_ the aggregator of phase `phaseId_`
    /// @param phaseId_ the phase the feed's real round ids are numbered in (their top 16 bits above 64)
    constructor(address aggregator_, uint16 phaseId_, address owner_) {
        owner = owner_;
        phaseId = phaseId_;
        _current = AggregatorV3Interface(aggregator_);
        phaseAggregators[phaseId_] = AggregatorV3Interface(aggregator_);
        emit OwnershipTransferred(address(0), owner_);
    }

    modifier onlyOwner() {
        if (msg.sender != owner) revert OnlyOwner(msg.sender);
        _;
    }

    // ---- readers --------------------------------------------------------------------------------------------------

    function aggregator() external view returns (address) {
        return address(_current);
    }

    function decimals() external view returns (uint8) {
        return _current.decimals();
    }

    function description() external view returns (string memory) {
        return _current.description();
    }

    function version() external view returns (uint256) {
        return _current.version();
    }

    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80) {
        (uint80 r, int256 a, uint256 s, uint256 u, uint80 ans) = _current.latestRoundData();
        return _withPhase(phaseId, r, a, s, u, ans);
    }

    function getRoundData(uint80 roundId) external view returns (uint80, int256, uint256, uint256, uint80) {
        uint16 phase = uint16(roundId >> PHASE_OFFSET);
        AggregatorV3Interface agg = phaseAggregators[phase];
        if (address(agg) == address(0)) revert NoAggregatorForPhase(phase);
        (uint80 r, int256 a, uint256 s, uint256 u, uint80 ans) = agg.getRoundData(uint80(uint64(roundId)));
        return _withPhase(phase, r, a, s, u, ans);
    }

    function latestRound() external view returns (uint256) {
        return (uint256(phaseId) << PHASE_OFFSET) | IAggregatorV2Getters(address(_current)).latestRound();
    }

    function latestAnswer() external view returns (int256) {
        return IAggregatorV2Getters(address(_current)).latestAnswer();
    }

    function latestTimestamp() external view returns (uint256) {
        return IAggregatorV2Getters(address(_current)).latestTimestamp();
    }

    function proposedLatestRoundData() external view returns (uint80, int256, uint256, uint256, uint80) {
        if (address(proposedAggregator) == address(0)) revert NoProposedAggregator();
        return proposedAggregator.latestRoundData();
    }

    function proposedGetRoundData(uint80 roundId) external view returns (uint80, int256, uint256, uint256, uint80) {
        if (address(proposedAggregator) == address(0)) revert NoProposedAggregator();
        return proposedAggregator.getRoundData(roundId);
    }

    // ---- the owner ------------------------------------------------------------------------------------------------

    function proposeAggregator(address aggregator_) external onlyOwner {
        proposedAggregator = AggregatorV3Interface(aggregator_);
    }

    /// @notice Makes the proposed aggregator current, as phase phaseId + 1.
    function confirmAggregator(address aggregator_) external onlyOwner {
        if (aggregator_ != address(proposedAggregator) || aggregator_ == address(0)) revert InvalidProposedAggregator(aggregator_);
        delete proposedAggregator;
        uint16 id = phaseId + 1;
        phaseId = id;
        _current = AggregatorV3Interface(aggregator_);
        phaseAggregators[id] = AggregatorV3Interface(aggregator_);
    }

    function transferOwnership(address to) external onlyOwner {
        pendingOwner = to;
        emit OwnershipTransferRequested(owner, to);
    }

    function acceptOwnership() external {
        if (msg.sender != pendingOwner) revert OnlyPendingOwner(msg.sender);
        emit OwnershipTransferred(owner, msg.sender);
        owner = msg.sender;
        pendingOwner = address(0);
    }

    function _withPhase(uint16 phase, uint80 r, int256 a, uint256 s, uint256 u, uint80 ans)
        private
        pure
        returns (uint80, int256, uint256, uint256, uint80)
    {
        uint80 p = uint80(uint256(phase) << PHASE_OFFSET);
        return (p | r, a, s, u, p | ans);
    }
}
