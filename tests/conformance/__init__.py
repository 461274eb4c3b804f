"""Conformance of the fake to Rocket.Chat's own sources: recorded request -> answer pairs.

Each file in fixtures/ names the source it was taken from (repository, path, commit or
package version) and lists cases; ``runner.py`` turns every case into one test per server
profile it applies to, against the world that ``world.py`` builds.
"""
