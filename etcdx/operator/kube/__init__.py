"""The Kubernetes driver: an ``EtcdxCluster`` custom resource, members as pods with claims.

- ``manifests``: the objects (CRD, RBAC, operator Deployment; per cluster the
  services, claims, pods and TLS secrets) as plain dicts;
- ``api``: the few Kubernetes calls the driver makes, on the official client;
- ``driver``: slots as claims + pods, for the shared reconcile loop;
- ``controller``: the kopf handlers (``kopf run -m etcdx.operator.kube.controller``).

Needs the ``kube`` extra (kopf, kubernetes).
"""
