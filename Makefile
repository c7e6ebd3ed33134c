# The two commands a newcomer needs; both install what is missing first.
.PHONY: demo test lint bench

# Build the 16 services, assemble images, push them to a registry on loopback, run them with
# podman and print a health table.
demo:
	scripts/setup
	cargo build --release
	scripts/demo

# Every test: unit, engine, images, registry, SBOM, reproducibility, and the 16 services end to end.
test:
	scripts/setup
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo test

bench:
	scripts/setup
	cargo build --release
	scripts/bench
