"""Real Argo clients against `weft server` (run by tests/all/api.rs).

Usage: clients.py SERVER_URL
- Hera: Workflow.create(wait=True) end to end, for a container step and a
  Python script step, then WorkflowsService.list_workflows.
- argo-workflows (the generated Python client): create a workflow and get it.
Prints one "ok: ..." line per check; any failure raises (exit code 1).
"""

import sys

import argo_workflows
from argo_workflows.api import workflow_service_api
from argo_workflows.model.io_argoproj_workflow_v1alpha1_workflow_create_request import (
    IoArgoprojWorkflowV1alpha1WorkflowCreateRequest,
)
from hera.shared import global_config
from hera.workflows import Container, Steps, Workflow, WorkflowsService, script

url = sys.argv[1]
global_config.host = url
global_config.verify_ssl = False
global_config.token = sys.argv[2] if len(sys.argv) > 2 else None


@script(image="python:3.12")
def add(a: int, b: int):
    print(a + b)


# 1. Hera: a container step, create(wait=True)
with Workflow(generate_name="hera-hello-", entrypoint="main", namespace="default") as w:
    Container(name="main", image="busybox", command=["echo"], args=["hello from hera"])
done = w.create(wait=True, poll_interval=1)
assert done.status.phase == "Succeeded", done.status
print("ok: hera create(wait=True) ->", done.metadata.name, done.status.phase)

# 2. Hera: a script step with arguments
with Workflow(generate_name="hera-script-", entrypoint="steps", namespace="default") as w2:
    with Steps(name="steps"):
        add(arguments={"a": 2, "b": 3})
done2 = w2.create(wait=True, poll_interval=1)
assert done2.status.phase == "Succeeded", done2.status
results = [n.outputs.result for n in done2.status.nodes.values() if n.type == "Pod" and n.outputs]
assert results == ["5"], results
print("ok: hera script step ->", results)

# 3. Hera: WorkflowsService.list_workflows
service = WorkflowsService(host=url, verify_ssl=False, token=global_config.token)
listed = service.list_workflows(namespace="default")
names = {i.metadata.name for i in listed.items}
assert done.metadata.name in names and done2.metadata.name in names, names
print("ok: hera list_workflows ->", len(listed.items), "workflows")

# 4. argo-workflows: create and get
configuration = argo_workflows.Configuration(host=url)
configuration.verify_ssl = False
if global_config.token:
    configuration.api_key["BearerToken"] = global_config.token
    configuration.api_key_prefix["BearerToken"] = "Bearer"
with argo_workflows.ApiClient(configuration) as client:
    api = workflow_service_api.WorkflowServiceApi(client)
    manifest = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "argo-client-"},
        "spec": {
            "entrypoint": "main",
            "templates": [
                {"name": "main", "container": {"image": "busybox", "command": ["echo"], "args": ["hi"]}}
            ],
        },
    }
    created = api.create_workflow(
        namespace="default",
        body=IoArgoprojWorkflowV1alpha1WorkflowCreateRequest(workflow=manifest, _check_type=False),
        _check_return_type=False,
    )
    name = created["metadata"]["name"]
    got = api.get_workflow(namespace="default", name=name, _check_return_type=False)
    assert got["metadata"]["name"] == name, got
    assert got["status"]["phase"] in ("Running", "Succeeded"), got["status"]
    print("ok: argo-workflows create + get ->", name, got["status"]["phase"])
