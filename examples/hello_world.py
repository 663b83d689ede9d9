"""Hello world: start a local cluster, join two strings on it, print the result, stop."""
from rain.client import blob, tasks
from rain.local_cluster import LocalCluster


def main():
    with LocalCluster(governors=[1, 1]) as cluster:
        client = cluster.client()
        with client.new_session("hello world") as session:
            task = tasks.Concat((blob("Hello "), blob("world!")))
            task.output.keep()
            session.submit()
            result = task.output.fetch()
            print(result.get_str())
            info = client.get_server_info()
            print(f"(computed on a local cluster of {len(info['governors'])} governors at "
                  f"{cluster.server_address}; dashboard {cluster.dashboard_url})")


if __name__ == "__main__":
    main()
