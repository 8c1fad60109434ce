#pragma once
// `steedos-socket --probe health|ready`: the container's health check, without curl or wget in
// the image. It reads the configuration the node reads (--config, MOLECULER_CONFIG, PORT, ...),
// so the check follows gateway.port and gateway.healthPath/readyPath whatever the operator set.

namespace steedos::app {

/// True when the command line asks for a probe (`--probe` anywhere in it).
bool probe_requested(int argc, char** argv);

/// Arguments: `--probe health|ready [--config FILE]` (`--log-format X` is accepted and ignored,
/// so the node's own arguments can follow). GETs the probe path on the gateway's port of this
/// host, prints one line and returns 0 when the answer is 200, 1 otherwise (refused, timed out
/// after 3 s, another status), 2 on bad arguments or configuration.
int run_probe(int argc, char** argv);

}  // namespace steedos::app
