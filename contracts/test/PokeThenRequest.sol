// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {MockAggregator} from "./MockAggregator.sol";
import {IOracleRouter} from "../interfaces/IOracleRouter.sol";
import {IMarginEngine} from "../interfaces/IMarginEngine.sol";

/// @title PokeThenRequest
/// @notice Review helper (test/review/PokeRoundReview.test.ts): in ONE transaction, pokes the router through one of its
///         doors (so the request is served from the router's transient cache), optionally moves the mock feed, then
///         requests an order as the account's operator, and records what the router says right after the request.
contract PokeThenRequest {
    struct Req {
        uint256 accountId;
        uint256 marketId;
        int256 sizeDelta;
        uint256 acceptablePrice;
        uint256 deadline;
        bool reduceOnly;
    }

    /// @notice What the router reported in the transaction: the first door's poke, and the reads right after the request.
    uint256 public pokedPrice;
    uint80 public pokedRound;
    uint80 public latestAfter;
    uint256 public priceAfter;
    uint256 public orderId;

    /// @param door 0: none, 1: poke, 2: pokeMarket, 3: pokeRound.
    /// @param move 0: none, 1: feed.setAnswer(answer) (next id), 2: feed.setRound(0, answer, now, now), 3: feed reverts.
    function run(
        IOracleRouter router,
        IMarginEngine engine,
        MockAggregator feed,
        address asset,
        uint8 door,
        uint8 move,
        int256 answer,
        Req calldata r
    ) external {
        if (door == 1) (, pokedPrice) = router.poke(asset);
        else if (door == 2) (, pokedPrice,,) = router.pokeMarket(asset);
        else if (door == 3) (, pokedPrice, pokedRound) = router.pokeRound(asset);
        if (move == 1) feed.setAnswer(answer);
        else if (move == 2) feed.setRound(0, answer, block.timestamp, block.timestamp);
        else if (move == 3) feed.setReverting(true);
        orderId = engine.requestOrder(r.accountId, r.marketId, r.sizeDelta, r.acceptablePrice, r.deadline, r.reduceOnly);
        latestAfter = router.latestRound(asset);
        priceAfter = router.price(asset);
    }

    /// @notice poke, move the feed to the next round at `answer`, then pokeRound: served from the cache.
    function pokeMovePokeRound(IOracleRouter router, MockAggregator feed, address asset, int256 answer)
        external
        returns (bool ok, uint256 px, uint80 roundId, uint80 latest)
    {
        router.poke(asset);
        feed.setAnswer(answer);
        (ok, px, roundId) = router.pokeRound(asset);
        latest = router.latestRound(asset);
    }
}
