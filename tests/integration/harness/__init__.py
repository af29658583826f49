"""The integration test harness: library code of tests/integration (its
fixtures are in conftest.py) and of tests/app. Real processes only; only
loopback is ever addressed, and every wait is a poll with a deadline.

  paths            where the binaries under test are (build directory, wharfd,
                   the health driver, the demo app, fleet.sh)
  wharfd           wharfd's config (render_config, build_config,
                   targets_config) and the Wharfd process
  rules_config     builders for listener rules and load balancing (tg, fwd,
                   cond, rule, listener, config)
  admin_client     the admin API: config block, token file, Admin client
  prometheus       parsing /metrics, picking a series
  http_message     the strict HTTP/1.1 parsers and the errors they raise
  http_client      RawClient, a raw-socket head reader, one-shot GETs, curl
  upstreams        origin servers in this process (Upstream, RawUpstream,
                   Blackhole) and their response scripts
  health_server    HealthServer (switchable /health), also as its own
                   process (ServerProc)
  loopback_server  the accept thread the origin servers share
  health_driver    the target registry's driver program (HealthDriver)
  demo_app         the demo app as a local process, and the `demo_app` and
                   `demo_server` fixtures tests/app shares
  fleet            Docker engines in network namespaces (Fleet, Host,
                   Container)
  load             client traffic in threads (LoadGen, split_counts,
                   SlowRequest)
  services         the controller on the fleet: service configs, the
                   cluster's containers and engine events, TaskLoad
  streaming        paced readers and CRC-checked byte streams
  websocket        WebSocket client frames and the upgrade
  tls              certificates, TLS clients, https configs, TLS load
  cookies          stickiness cookies
  processes        /proc figures, stopping processes, requests a server has
                   read and not answered
  ports            free loopback ports, whether something listens
  polling          wait_until
  reporting        diagnostics shown with a failed test, server-fixture
                   teardown
"""
