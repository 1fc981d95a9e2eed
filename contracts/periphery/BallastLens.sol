// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IMarginEngine} from "../interfaces/IMarginEngine.sol";
import {IOracleRouter} from "../interfaces/IOracleRouter.sol";
import {IRebalancer} from "../interfaces/IRebalancer.sol";
import {IVault} from "../interfaces/IVault.sol";

/// @title BallastLens
/// @notice Everything the keeper's health mirror (keeper/mirror.ts) reads at one block, in one `eth_call`, and never
///         deployed: the call carries this contract's creation code with the engine and a list of accounts as
///         constructor arguments, the constructor reads, and it reverts `Snapshot(abi-encoded View)` — revert data
///         has no size limit, returned creation code would (EIP-170: 24,576 bytes). Read-only: it calls views only.
/// @dev What the mirror needs to value every account off chain exactly as `AccountLogic.valuation` does (lib/margin.ts
///      `valueAccount`): per market its parameters, running state, price and volatilities (the view door the engine's
///      views use: `tryPrice`, `volatilities`); per listed asset its haircut, decimals and price; the keeper fee's and
///      the liquidation's parameters; and, for the requested accounts, their own state: settlement balance (from
///      `accountState`, the one view that returns it: `priced` false when a position's price is invalid at this
///      block, the rest is then still exact), open positions and margin balances.
contract BallastLens {
    /// @notice One market: `price` 0 and `ok` false when its oracle is invalid at this block or its volatilities
    ///         cannot be read; volatilities 0 when volK is 0 or the price is invalid (the engine does not read them then).
    struct MarketView {
        IMarginEngine.MarketParams params;
        IMarginEngine.MarketState state;
        bool ok;
        uint256 price;
        uint256 volTarget;
        uint256 volMaint;
    }

    /// @notice One listed collateral asset, in listing order (bit i of a margin mask). The settlement asset counts as
    ///         exactly 1 USD (ok, 1e18) as in every valuation; another asset with an invalid oracle as 0.
    struct AssetView {
        address token;
        uint8 decimals;
        uint64 haircut;
        bool ok;
        uint256 price;
    }

    /// @notice One account's own state. `positions` and `margins` follow the set bits of the masks, lowest first.
    ///         `priced` false: `accountState` reverted (a position's market oracle is invalid), settlement unknown (0).
    struct AccountView {
        uint256 id;
        bool priced;
        int256 settlement;
        uint256 positionMask;
        uint256 marginMask;
        IMarginEngine.Position[] positions;
        uint256[] margins;
    }

    struct View {
        uint256 blockNumber;
        uint256 timestamp;
        address settlementAsset;
        address gasAsset;
        bool gasAssetOk;
        uint256 gasAssetPrice;
        IRebalancer.FeeParams feeParams;
        IMarginEngine.RiskParams risk;
        MarketView[] markets;
        AssetView[] assets;
        AccountView[] accounts;
    }

    /// @notice The result, as revert data (see the contract's notice).
    error Snapshot(View view_);

    constructor(address engine, uint256[] memory accountIds) {
        revert Snapshot(_read(engine, accountIds));
    }

    function _read(address engine, uint256[] memory accountIds) private view returns (View memory v) {
        IMarginEngine e = IMarginEngine(engine);
        IOracleRouter oracle = e.oracle();
        v.blockNumber = block.number;
        v.timestamp = block.timestamp;
        v.settlementAsset = e.settlementAsset();
        v.gasAsset = IRebalancer(engine).gasAsset();
        (v.gasAssetOk, v.gasAssetPrice) = _price(oracle, v.gasAsset, v.settlementAsset);
        v.feeParams = IRebalancer(engine).feeParams();
        v.risk = e.riskParams();

        uint256 n = e.marketCount();
        v.markets = new MarketView[](n);
        for (uint256 m; m < n; ++m) {
            MarketView memory mv = v.markets[m];
            mv.params = e.marketParams(m);
            mv.state = e.marketState(m);
            (mv.ok, mv.price) = _price(oracle, mv.params.asset, v.settlementAsset);
            if (mv.ok && mv.params.volK != 0) {
                // a market whose volatilities cannot be read (no feed for its asset, e.g. one on the settlement asset)
                // cannot value a position: unpriced, as the engine would revert valuing one; the other markets go on
                try oracle.volatilities(mv.params.asset) returns (uint256 target, uint256 maint) {
                    (mv.volTarget, mv.volMaint) = (target, maint);
                } catch {
                    (mv.ok, mv.price) = (false, 0);
                }
            }
        }

        (address[] memory tokens, IVault.AssetConfig[] memory configs) = IVault(engine).listedAssetConfigs();
        v.assets = new AssetView[](tokens.length);
        for (uint256 i; i < tokens.length; ++i) {
            AssetView memory av = v.assets[i];
            av.token = tokens[i];
            av.decimals = configs[i].decimals;
            av.haircut = configs[i].haircut;
            (av.ok, av.price) = _price(oracle, tokens[i], v.settlementAsset);
        }

        v.accounts = new AccountView[](accountIds.length);
        for (uint256 k; k < accountIds.length; ++k) {
            v.accounts[k] = _account(e, accountIds[k]);
        }
    }

    function _account(IMarginEngine e, uint256 id) private view returns (AccountView memory a) {
        a.id = id;
        a.positionMask = e.positionMask(id);
        uint256[] memory amounts;
        (a.marginMask, amounts) = IVault(address(e)).marginBalances(id);
        a.positions = new IMarginEngine.Position[](_bits(a.positionMask));
        uint256 j;
        for (uint256 m; (a.positionMask >> m) != 0; ++m) {
            if ((a.positionMask >> m) & 1 != 0) a.positions[j++] = e.position(id, m);
        }
        a.margins = new uint256[](_bits(a.marginMask));
        j = 0;
        for (uint256 i; (a.marginMask >> i) != 0; ++i) {
            if ((a.marginMask >> i) & 1 != 0) a.margins[j++] = amounts[i];
        }
        try e.accountState(id) returns (IMarginEngine.AccountState memory st) {
            a.priced = true;
            a.settlement = st.settlement;
        } catch {
            // a position's market oracle is invalid at this block: the account cannot be valued (nor acted on)
        }
    }

    /// @dev The view door's price: the settlement asset is exactly 1 USD (the engine never asks the oracle for it);
    ///      any other asset is `tryPrice`, 0 when not ok.
    function _price(IOracleRouter oracle, address asset, address settlementAsset) private view returns (bool ok, uint256 px) {
        if (asset == settlementAsset) return (true, 1e18);
        (ok, px) = oracle.tryPrice(asset);
        if (!ok) px = 0;
    }

    function _bits(uint256 x) private pure returns (uint256 n) {
        for (; x != 0; x &= x - 1) ++n;
    }
}
