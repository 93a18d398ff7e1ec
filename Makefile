# Images and a local cluster for the Kiada suite. Needs docker (or a compatible CLI), and kind
# or minikube for the cluster targets. `make help` lists the targets.

# Image names are $(REGISTRY)/<service>:$(VERSION). The default matches manifests/; with another
# registry, `make deploy` rewrites the image names as it applies the manifests.
REGISTRY ?= localhost/kiada
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
SERVICES := quote quiz kiada
PLATFORMS ?= linux/amd64,linux/arm64
KIND_CLUSTER ?= kiada

.PHONY: help images push multiarch kind-cluster kind-load minikube-load deploy wait undeploy kind-delete

help:
	@echo "images         build $(foreach s,$(SERVICES),$(REGISTRY)/$(s):$(VERSION))"
	@echo "push           push them to REGISTRY"
	@echo "multiarch      build and push for $(PLATFORMS) with docker buildx"
	@echo "kind-cluster   create the lab cluster from kind/cluster.yaml"
	@echo "kind-load      load the images into the kind cluster"
	@echo "minikube-load  load the images into minikube"
	@echo "deploy         kubectl apply the manifests (image names from REGISTRY)"
	@echo "wait           wait until every Deployment has rolled out"
	@echo "undeploy       delete namespace kiada (and with it the quiz-data volume)"
	@echo "kind-delete    delete the kind cluster"

images:
	$(foreach s,$(SERVICES),docker build -f Dockerfiles/Dockerfile --target $(s) -t $(REGISTRY)/$(s):$(VERSION) . &&) true

push: images
	$(foreach s,$(SERVICES),docker push $(REGISTRY)/$(s):$(VERSION) &&) true

multiarch:
	$(foreach s,$(SERVICES),docker buildx build --platform $(PLATFORMS) -f Dockerfiles/Dockerfile --target $(s) -t $(REGISTRY)/$(s):$(VERSION) --push . &&) true

kind-cluster:
	kind create cluster --config kind/cluster.yaml

kind-load: images
	$(foreach s,$(SERVICES),kind load docker-image --name $(KIND_CLUSTER) $(REGISTRY)/$(s):$(VERSION) &&) true

minikube-load: images
	$(foreach s,$(SERVICES),minikube image load $(REGISTRY)/$(s):$(VERSION) &&) true

deploy:
	sed 's#localhost/kiada/#$(REGISTRY)/#' manifests/*.yaml | kubectl apply -f -

wait:
	kubectl wait --for=condition=Available deployment --all -n kiada --timeout=180s

undeploy:
	kubectl delete namespace kiada --ignore-not-found

kind-delete:
	kind delete cluster --name $(KIND_CLUSTER)
