"""The local federation's processes, as argv lists.

Local mode runs the same services as the compose stack, as processes on 127.0.0.1.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    role: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Ports:
    superlink: int = 8000
    supernode_base: int = 9094

    def supernode(self, index: int) -> int:
        return self.supernode_base + index


def local_processes(num_nodes: int, ports: Ports, state_db: str) -> list[ProcessSpec]:
    link = f"127.0.0.1:{ports.superlink}"
    specs = [
        ProcessSpec(
            "superlink",
            "superlink",
            [
                "flower-superlink",
                "--insecure",
                "--isolation",
                "process",
                "--database",
                state_db,
                "--host",
                "127.0.0.1",
                "--port",
                str(ports.superlink),
                "--disable-runtime-dependency-installation",
            ],
        ),
        ProcessSpec(
            "superexec-serverapp",
            "superexec-serverapp",
            ["flower-superexec", "--insecure", "--plugin-type", "serverapp", "--runtime-api-address", link],
        ),
    ]
    for i in range(num_nodes):
        port = ports.supernode(i)
        specs.append(
            ProcessSpec(
                f"supernode-{i + 1}",
                "supernode",
                [
                    "flower-supernode",
                    "--insecure",
                    "--superlink",
                    link,
                    "--isolation",
                    "process",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--node-config",
                    f"partition-id={i} num-partitions={num_nodes}",
                ],
            )
        )
        specs.append(
            ProcessSpec(
                f"superexec-clientapp-{i + 1}",
                "superexec-clientapp",
                [
                    "flower-superexec",
                    "--insecure",
                    "--plugin-type",
                    "clientapp",
                    "--runtime-api-address",
                    f"127.0.0.1:{port}",
                ],
            )
        )
    return specs
