"""The etcdx operator: declare a cluster (``EtcdxCluster``), and it makes it so.

- ``spec``: the resource's schema, validation and parsed form;
- ``model``: what the loop observes, the actions it takes, its decisions;
- ``reconcile``: the pure loop (observation + spec → one safe action and its reason);
- ``status``: the status written back, and its terminal table;
- ``loop``: the shell that observes, decides, acts and writes the status;
- ``driver``: what both drivers share (probing members, membership calls, backups);
- ``local``: members as processes on this host; ``kube``: pods and claims on Kubernetes;
- ``members``: the small interface to members (and its gRPC implementation);
- ``backups``, ``pki``, ``installations``: backups on the policy, certificates, installed versions;
- ``cli``: ``etcdx operator run|status|delete|validate|manifests``.
"""
