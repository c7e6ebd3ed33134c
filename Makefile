# Shortcuts for the scripts the README names; each script installs what is missing first.
.PHONY: demo test bench
demo:
	scripts/demo
test:
	scripts/test
bench:
	scripts/bench
