from surge.cli import main

main()
