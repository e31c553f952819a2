"""The docker-free local runner: embedded AWS emulator, stack provisioning from
template.yaml, and the event flow that Lambda and EventBridge provide on AWS."""
