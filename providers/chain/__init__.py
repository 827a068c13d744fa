"""Chain readers for reconciliation: Esplora REST (BTC) and Ethereum JSON-RPC through web3 (ETH, BNB)."""
