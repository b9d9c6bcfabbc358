// Package sidebyside holds what the side-by-side benchmark commands
// (bench/harness, bench/registry, bench/docker) share: timing a child
// command with its CPU time and peak RSS, the CPU time of the rest of the
// machine, waiting for an idle machine, putting memory and the page cache
// in the same state before every run, the medians of the runs, cleanups on
// exit and Ctrl-C, and the helper subcommands that generate an image and
// warm memory in a process of their own.
package sidebyside
