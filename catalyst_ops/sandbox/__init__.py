"""The stand-in trading stack: the nine services of the contract and a stand-in of the broker's
v2 API, over real HTTP on localhost, with the real services' quirks and injectable faults.

It is the one test double of the project (the real services are not ours). Each service runs
as its own process (`catalyst-ops sandbox serve NAME`), so killing, hanging and restarting one
behaves as it would on the droplet.
"""
