"""Local Solana cluster for tests: embedded LiteSVM JSON-RPC or solana-test-validator.

The embedded cluster (no external binaries) is solders' LiteSVM behind Solana JSON-RPC over HTTP
and a PubSub websocket, so unmodified solana-py, anchorpy and pythclient clients work against it:

* `localnet.cluster.EmbeddedCluster` - LiteSVM + wall-time slot clock (400 ms/slot, Clock sysvar
  follows, `warp()` for tests) + recent-blockhash, signature and account-index stores + preload
  of `solana account --output json` files and `.so` programs.
* `localnet.rpc.create_rpc_app` - the HTTP JSON-RPC app (single requests and batches).
* `localnet.pubsub.create_pubsub_app` - account/program/signature/slot/logs subscriptions.
* `localnet.server.LocalnetServer` / `run_embedded` - both servers on 127.0.0.1 (8899 / 8900);
  `python -m localnet --rpc-port 8899 --account ADDR FILE.json --bpf-program ADDR FILE.so`.
"""
