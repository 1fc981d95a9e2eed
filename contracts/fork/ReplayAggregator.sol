// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AggregatorV3Interface} from "@chainlink/contracts/src/v0.8/shared/interfaces/AggregatorV3Interface.sol";

/// @title ReplayAggregator
/// @notice FORK REPLICA ONLY (lib/fork/replica.ts): a stand-in for the OCR aggregator behind a Chainlink proxy,
///         serving REAL rounds of that feed's history (data/chainlink_*_rounds_mainnet.csv) with their real
///         aggregator round ids (1, 2, … of the phase the proxy numbers them in), answers and timestamps. It is not
///         Chainlink's bytecode and has no oracles: the rounds are loaded by the replica's seeder, oldest first and
///         contiguous, never one whose `updatedAt` is later than the block's time (no round from the future).
///         What it serves is what a real aggregator serves to readers: `latestRoundData`, `getRoundData` (reverts
///         `NoDataPresent` for a round it does not have, as OCR aggregators revert "No data present"), the v2
///         getters, `decimals`, `description`, `version`.
/// @dev One slot per round, laid out as the packed word the loader sends: answer (int192, positive) in the low 192
///      bits, startedAt in bits 192–223, updatedAt in bits 224–255. answeredInRound = roundId, as in the data.
contract ReplayAggregator is AggregatorV3Interface {
    error NotLoader(address caller);
    error NoDataPresent();
    error RoundFromTheFuture(uint256 roundId, uint256 updatedAt, uint256 blockTime);
    error RoundsOutOfOrder(uint256 roundId, uint256 updatedAt, uint256 previousUpdatedAt);
    error BadRound(uint256 roundId);

    /// @notice The Chainlink aggregator event of each new round (emitted for the latest round of each load).
    event AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt);

    uint8 public immutable override decimals;
    address public immutable loader;
    string private _description;
    /// @dev round id n is at index n − 1
    uint256[] private _rounds;

    constructor(uint8 decimals_, string memory description_, address loader_) {
        decimals = decimals_;
        _description = description_;
        loader = loader_;
    }

    /// @notice Appends the next rounds (ids latestRound()+1, +2, …), each packed as described above.
    function load(uint256[] calldata packed) external {
        if (msg.sender != loader) revert NotLoader(msg.sender);
        uint256 n = _rounds.length;
        uint256 prevAt = n == 0 ? 0 : _rounds[n - 1] >> 224;
        for (uint256 i; i < packed.length; ++i) {
            uint256 w = packed[i];
            uint256 at = w >> 224;
            uint256 id = n + i + 1;
            if (uint192(w) == 0 || at == 0 || uint32(w >> 192) > at) revert BadRound(id);
            if (at > block.timestamp) revert RoundFromTheFuture(id, at, block.timestamp);
            if (at < prevAt) revert RoundsOutOfOrder(id, at, prevAt);
            prevAt = at;
            _rounds.push(w);
        }
        if (packed.length != 0) {
            uint256 last = packed[packed.length - 1];
            emit AnswerUpdated(int256(uint256(uint192(last))), n + packed.length, last >> 224);
        }
    }

    function description() external view returns (string memory) {
        return _description;
    }

    /// @notice The OCR aggregators' version.
    function version() external pure returns (uint256) {
        return 4;
    }

    function getRoundData(uint80 roundId) public view returns (uint80, int256, uint256, uint256, uint80) {
        if (roundId == 0 || roundId > _rounds.length) revert NoDataPresent();
        uint256 w = _rounds[roundId - 1];
        return (roundId, int256(uint256(uint192(w))), uint32(w >> 192), w >> 224, roundId);
    }

    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80) {
        return getRoundData(uint80(_rounds.length));
    }

    function latestRound() external view returns (uint256) {
        return _rounds.length;
    }

    function latestAnswer() external view returns (int256 answer) {
        if (_rounds.length != 0) answer = int256(uint256(uint192(_rounds[_rounds.length - 1])));
    }

    function latestTimestamp() external view returns (uint256 at) {
        if (_rounds.length != 0) at = _rounds[_rounds.length - 1] >> 224;
    }
}
