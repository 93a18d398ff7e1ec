# Images and a local cluster for the Kiada suite. Needs docker (or a compatible CLI; buildx for
# multiarch and binaries), kubectl, and kind or minikube for the cluster targets. `make help`
# lists the targets.

# Image names are $(REGISTRY)/<service>:$(VERSION). The default matches manifests/; with another
# registry, `make deploy` gives kustomize the image names (`images:`) as it applies.
REGISTRY ?= localhost/kiada
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
SERVICES := quote quiz kiada
PLATFORMS ?= linux/amd64,linux/arm64
# Attestations pushed with the multi-platform images: an SBOM and SLSA provenance.
ATTESTATIONS ?= --sbom=true --provenance=mode=max
KIND_CLUSTER ?= kiada
# What `make deploy` applies: manifests/ (the suite), overlays/postgres, examples, … (any
# kustomization that names the images localhost/kiada/<service>).
KUSTOMIZATION ?= manifests
KUBECTL ?= kubectl
# The kustomization `make deploy` writes: $(KUSTOMIZATION) with the image names and tag above.
DEPLOY_DIR := target/deploy

.PHONY: help images push multiarch binaries kind-cluster kind-load minikube-load deploy-kustomization deploy wait undeploy kind-delete

help:
	@echo "images         build $(foreach s,$(SERVICES),$(REGISTRY)/$(s):$(VERSION))"
	@echo "push           push them to REGISTRY"
	@echo "multiarch      cross-compile for $(PLATFORMS) with docker buildx, push with SBOM and provenance"
	@echo "binaries       the static binaries for $(PLATFORMS) into target/dist/<os>_<arch>/"
	@echo "kind-cluster   create the lab cluster from kind/cluster.yaml"
	@echo "kind-load      load the images into the kind cluster"
	@echo "minikube-load  load the images into minikube"
	@echo "deploy         kubectl apply -k $(KUSTOMIZATION) with the image names from REGISTRY"
	@echo "wait           wait until every Deployment has rolled out"
	@echo "undeploy       delete namespace kiada (and with it the quiz-data volume)"
	@echo "kind-delete    delete the kind cluster"

images:
	$(foreach s,$(SERVICES),docker build -f Dockerfiles/Dockerfile --target $(s) -t $(REGISTRY)/$(s):$(VERSION) . &&) true

push: images
	$(foreach s,$(SERVICES),docker push $(REGISTRY)/$(s):$(VERSION) &&) true

# The builder stages run on the build machine's own platform and cross-compile for each target
# platform's musl triple with the xx helpers; only the runtime stages are per platform, and they
# only copy (no QEMU). The digest of each pushed image lands in target/images/<service>.json (the
# release workflow signs it).
multiarch:
	mkdir -p target/images
	$(foreach s,$(SERVICES),docker buildx build --platform $(PLATFORMS) -f Dockerfiles/Dockerfile --target $(s) $(ATTESTATIONS) --metadata-file target/images/$(s).json -t $(REGISTRY)/$(s):$(VERSION) --push . &&) true

binaries:
	docker buildx build --platform $(PLATFORMS) -f Dockerfiles/Dockerfile --target binaries --output type=local,dest=target/dist .

kind-cluster:
	kind create cluster --config kind/cluster.yaml

kind-load: images
	$(foreach s,$(SERVICES),kind load docker-image --name $(KIND_CLUSTER) $(REGISTRY)/$(s):$(VERSION) &&) true

minikube-load: images
	$(foreach s,$(SERVICES),minikube image load $(REGISTRY)/$(s):$(VERSION) &&) true

# kustomize, built into kubectl, renames the images: a kustomization of our own on top of
# $(KUSTOMIZATION), in target/ (kustomize reads resources only by relative paths).
deploy-kustomization:
	mkdir -p $(DEPLOY_DIR)
	printf '%s\n' 'apiVersion: kustomize.config.k8s.io/v1beta1' 'kind: Kustomization' \
	  'resources:' '  - ../../$(KUSTOMIZATION)' 'images:' \
	  $(foreach s,$(SERVICES),'  - name: localhost/kiada/$(s)' '    newName: $(REGISTRY)/$(s)' '    newTag: "$(VERSION)"') \
	  > $(DEPLOY_DIR)/kustomization.yaml

deploy: deploy-kustomization
	$(KUBECTL) apply -k $(DEPLOY_DIR)

wait:
	$(KUBECTL) wait --for=condition=Available deployment --all -n kiada --timeout=180s

undeploy:
	$(KUBECTL) delete namespace kiada --ignore-not-found

kind-delete:
	kind delete cluster --name $(KIND_CLUSTER)
