"""``rain start --autoconf pbs`` on the hosts. No PBS server runs here: the job's node
file is written as PBS writes it (one line per CPU slot) and ``PBS_NODEFILE`` names it;
the governors are started over the hosts' real sshd."""
from helpers import cluster_record, rain, rain_processes, run_pipeline, write_shared


def test_autoconf_pbs_offers_the_cpus_of_the_node_file(hosts):
    head = hosts.head
    node_file = write_shared(hosts, "pbs_nodefile", "node1\nnode2\nnode1\n")
    env = {"PBS_NODEFILE": node_file}
    out = rain(head, ["start", "--autoconf", "pbs", "--cluster-id", "pbs",
                      "--ssh-command", f"ssh -F {hosts.ssh_config}"], env=env).stdout
    try:
        record = cluster_record(head, "pbs", env)
        assert [(g["host"], g["cpus"]) for g in record["governors"]] == \
            [("node1", 2), ("node2", 1)]
        assert "on node1 (2 cpus)" in out and "on node2 (1 cpus)" in out
        result = run_pipeline(head, record["server"], env)
        assert sorted(g["resources"]["cpus"] for g in result["governors"]) == [1, 2]
    finally:
        rain(head, ["stop", "pbs"], env=env)
    assert not rain_processes(hosts)
