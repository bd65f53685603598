"""Local stand-ins for Apple's and Google's push services, speaking their real wire protocols.

Used by the contract tests, the benchmarks and sandbox mode.
"""
