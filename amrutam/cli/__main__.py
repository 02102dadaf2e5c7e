from amrutam.cli import main

main()
