// Package scenario reads `probe run` scenarios (YAML) and runs them: a
// server and clients on the namespaces of a star testbed or, through their
// agents, on remote hosts, for a number of iterations, each process watched
// by the resources sampler from its first instruction. docs/scenarios.md
// describes the file and the results folders.
package scenario
